//! `xfwd -i`: the `xfwd> ` prompt (rustyline: line editing, history, tab
//! completion from the command table). It runs on its own thread and hands
//! each line to the main thread, which executes it between its other duties
//! (signals, `--duration`, the socket) and sends the reply back.

use super::commands::COMMANDS;
use super::Reply;
use crate::fwd::MODES;
use rustyline::completion::{Completer, Pair};
use rustyline::error::ReadlineError;
use rustyline::highlight::Highlighter;
use rustyline::hint::Hinter;
use rustyline::validate::Validator;
use rustyline::{Context, Editor, Helper};
use std::sync::mpsc;

/// One line from the prompt and where its reply goes.
#[derive(Debug)]
pub struct Request {
    /// The command line.
    pub line: String,
    /// The reply channel.
    pub reply: mpsc::Sender<Reply>,
}

/// Completion of command words, modes and port arguments.
#[derive(Debug, Default)]
pub struct CommandCompleter;

/// The completions of the word under the cursor, given the line before it.
pub fn complete(before: &str) -> (usize, Vec<String>) {
    let start = before.rfind(' ').map_or(0, |i| i + 1);
    let done: Vec<&str> = before[..start].split_whitespace().collect();
    let partial = &before[start..];
    let mut out: Vec<String> = Vec::new();
    for c in COMMANDS {
        let words: Vec<&str> = c.name.split(' ').collect();
        if done.len() < words.len() {
            if words[..done.len()] == done[..] && words[done.len()].starts_with(partial) {
                out.push(words[done.len()].to_string());
            }
        } else if done[..words.len()] == words[..] && done.len() == words.len() {
            // The command's first argument.
            let args: Vec<String> = match c.name {
                "set fwd" => MODES.iter().map(|(n, _)| n.to_string()).collect(),
                "start" => vec!["tx_first".into()],
                _ if c.args.starts_with("all|N") || c.args == "all" => vec!["all".into()],
                _ => Vec::new(),
            };
            out.extend(args.into_iter().filter(|a| a.starts_with(partial)));
        }
    }
    out.sort();
    out.dedup();
    (start, out)
}

impl Completer for CommandCompleter {
    type Candidate = Pair;

    fn complete(
        &self,
        line: &str,
        pos: usize,
        _ctx: &Context<'_>,
    ) -> rustyline::Result<(usize, Vec<Pair>)> {
        let (start, words) = complete(&line[..pos]);
        Ok((
            start,
            words
                .into_iter()
                .map(|w| Pair {
                    display: w.clone(),
                    replacement: format!("{w} "),
                })
                .collect(),
        ))
    }
}

impl Hinter for CommandCompleter {
    type Hint = String;
}
impl Highlighter for CommandCompleter {}
impl Validator for CommandCompleter {}
impl Helper for CommandCompleter {}

/// Start the prompt thread; it ends on `quit`, Ctrl-C or Ctrl-D (each
/// sends `quit`) or when the main thread stops answering.
///
/// # Errors
/// The terminal cannot be set up.
pub fn spawn() -> std::io::Result<(mpsc::Receiver<Request>, std::thread::JoinHandle<()>)> {
    let (tx, rx) = mpsc::channel::<Request>();
    let h = std::thread::Builder::new()
        .name("prompt".into())
        .spawn(move || prompt_loop(&tx))?;
    Ok((rx, h))
}

fn prompt_loop(tx: &mpsc::Sender<Request>) {
    let mut rl = match Editor::<CommandCompleter, rustyline::history::DefaultHistory>::new() {
        Ok(rl) => rl,
        Err(e) => {
            eprintln!("xfwd: the prompt cannot start: {e}");
            return;
        }
    };
    rl.set_helper(Some(CommandCompleter));
    let history = std::env::var_os("HOME").map(|h| std::path::Path::new(&h).join(".xfwd_history"));
    if let Some(h) = &history {
        let _ = rl.load_history(h);
    }
    loop {
        let line = match rl.readline("xfwd> ") {
            Ok(l) => l,
            Err(ReadlineError::Interrupted | ReadlineError::Eof) => "quit".to_string(),
            Err(e) => {
                eprintln!("xfwd: prompt: {e}");
                "quit".to_string()
            }
        };
        let line = line.trim().to_string();
        if line.is_empty() {
            continue;
        }
        let _ = rl.add_history_entry(line.as_str());
        let (rtx, rrx) = mpsc::channel();
        if tx
            .send(Request {
                line: line.clone(),
                reply: rtx,
            })
            .is_err()
        {
            break;
        }
        match rrx.recv() {
            Ok(r) => {
                if !r.text.is_empty() {
                    println!("{}", r.text.trim_end());
                }
            }
            Err(_) => break,
        }
        if line == "quit" {
            break;
        }
    }
    if let Some(h) = &history {
        let _ = rl.save_history(h);
    }
}

#[cfg(test)]
mod tests {
    use super::complete;

    #[test]
    fn completes_command_words_modes_and_ports() {
        assert_eq!(complete("sh").1, vec!["show"]);
        assert_eq!(complete("show p").1, vec!["port"]);
        assert_eq!(complete("show port ").1, vec!["info", "stats", "xstats"]);
        assert_eq!(complete("set fwd mac").1, vec!["mac", "macswap"]);
        assert_eq!(complete("show port stats a").1, vec!["all"]);
        assert_eq!(complete("start ").1, vec!["tx_first"]);
        assert_eq!(complete("set fwd mac").0, 8);
    }
}
