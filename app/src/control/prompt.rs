//! `xfwd -i`: the `xfwd> ` prompt (rustyline: line editing, history, tab
//! completion from the command table). It runs on its own thread and hands
//! each line to the main thread, which executes it between its other duties
//! (signals, `--duration`, the socket) and sends the reply back.
//!
//! When the run ends while rustyline waits for a key (`--duration`, a
//! signal), the thread cannot be woken: [`Prompt`]'s drop then puts the
//! terminal back as it found it (rustyline keeps it in raw mode while it
//! reads) and leaves the thread blocked in its read until the process
//! exits. The history is saved after every line, so nothing is lost.

use super::commands::COMMANDS;
use super::Reply;
use crate::fwd::MODES;
use nix::sys::termios::{tcgetattr, tcsetattr, SetArg, Termios};
use rustyline::completion::{Completer, Pair};
use rustyline::error::ReadlineError;
use rustyline::highlight::Highlighter;
use rustyline::hint::Hinter;
use rustyline::validate::Validator;
use rustyline::{Context, Editor, Helper};
use std::sync::mpsc;
use std::time::{Duration, Instant};

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

/// The prompt thread and the terminal settings from before it started.
#[derive(Debug)]
pub struct Prompt {
    thread: Option<std::thread::JoinHandle<()>>,
    saved: Option<Termios>,
}

/// How long [`Prompt::close`] gives a thread that is ending (`quit` was
/// typed: it prints the reply and saves the history).
const JOIN_WAIT: Duration = Duration::from_millis(200);

impl Prompt {
    /// Join the thread if it ends within `JOIN_WAIT` (200 ms); otherwise it is
    /// blocked reading a key: restore the terminal and leave it there.
    pub fn close(&mut self) {
        let Some(h) = self.thread.take() else {
            return;
        };
        let t = Instant::now();
        while !h.is_finished() && t.elapsed() < JOIN_WAIT {
            std::thread::sleep(Duration::from_millis(5));
        }
        if h.is_finished() {
            let _ = h.join();
            return;
        }
        if let Some(saved) = &self.saved {
            if let Err(e) = tcsetattr(std::io::stdin(), SetArg::TCSADRAIN, saved) {
                eprintln!(
                    "xfwd: the terminal settings could not be restored ({e}): run `stty sane`"
                );
            }
        }
        println!(); // end the `xfwd> ` line the prompt left
        drop(h); // detached: blocked in read(2) until the process exits
    }
}

impl Drop for Prompt {
    fn drop(&mut self) {
        self.close();
    }
}

/// Start the prompt thread; it ends on `quit`, Ctrl-C or Ctrl-D (each
/// sends `quit`) or when the main thread stops answering.
///
/// # Errors
/// The terminal cannot be set up.
pub fn spawn() -> std::io::Result<(mpsc::Receiver<Request>, Prompt)> {
    // The settings to restore if the run ends while rustyline reads (none
    // when stdin is not a terminal: then rustyline reads plain lines).
    let saved = tcgetattr(std::io::stdin()).ok();
    let (tx, rx) = mpsc::channel::<Request>();
    let h = std::thread::Builder::new()
        .name("prompt".into())
        .spawn(move || prompt_loop(&tx))?;
    Ok((
        rx,
        Prompt {
            thread: Some(h),
            saved,
        },
    ))
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
        if let Some(h) = &history {
            let _ = rl.save_history(h);
        }
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
