//! `xfwd ctl SOCKET COMMAND...`: run one command of the prompt on a running
//! xfwd through its control socket (`--telemetry SOCKET`). `show` commands
//! print their figures as JSON (one object, indented), the others print
//! what the prompt would; `/queries` print their JSON. Exit 1 when the
//! command failed or the socket cannot be reached.

use serde_json::Value;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

/// What to print for one reply.
#[derive(Debug, PartialEq, Eq)]
pub enum Output {
    /// Print on stdout, exit 0.
    Ok(String),
    /// Print on stderr, exit 1.
    Err(String),
}

/// How long a reply may take (a command waits for lcores at most 2 s each).
pub const TIMEOUT: Duration = Duration::from_secs(15);

/// Send `command` (its words joined by spaces) and return what to print.
pub fn run(socket: &Path, words: &[String], text: bool) -> Output {
    // `capture ... -w FILE`: the file is named for xfwd, from this directory.
    let mut words = words.to_vec();
    if let Some(i) = words.iter().position(|w| w == "-w") {
        if let Some(f) = words.get_mut(i + 1) {
            if let Ok(abs) = std::path::absolute(&*f) {
                *f = abs.display().to_string();
            }
        }
    }
    let line = words.join(" ");
    if line.trim().is_empty() {
        return Output::Err("a command is expected: `xfwd ctl SOCKET help`".into());
    }
    if line.contains('\n') {
        return Output::Err("one command, without newlines".into());
    }
    let s = match UnixStream::connect(socket) {
        Ok(s) => s,
        Err(e) => {
            return Output::Err(format!(
                "cannot connect to {}: {e} (is xfwd running with --telemetry {}?)",
                socket.display(),
                socket.display()
            ))
        }
    };
    let _ = s.set_read_timeout(Some(TIMEOUT));
    let _ = s.set_write_timeout(Some(TIMEOUT));
    let mut w = match s.try_clone() {
        Ok(w) => w,
        Err(e) => return Output::Err(e.to_string()),
    };
    let mut r = BufReader::new(s);
    let mut hello = String::new();
    if let Err(e) = r.read_line(&mut hello) {
        return Output::Err(format!("no greeting from {}: {e}", socket.display()));
    }
    if let Ok(v) = serde_json::from_str::<Value>(&hello) {
        if let Some(e) = v.get("error").and_then(Value::as_str) {
            return Output::Err(e.to_string());
        }
    }
    if let Err(e) = w.write_all(format!("{line}\n").as_bytes()) {
        return Output::Err(format!("sending: {e}"));
    }
    let mut reply = String::new();
    match r.read_line(&mut reply) {
        Ok(0) => return Output::Err("xfwd closed the connection".into()),
        Ok(_) => {}
        Err(e) => return Output::Err(format!("no reply within {TIMEOUT:?}: {e}")),
    }
    let v: Value = match serde_json::from_str(&reply) {
        Ok(v) => v,
        Err(e) => return Output::Err(format!("bad reply ({e}): {reply}")),
    };
    if words.first().is_some_and(|w| w == "capture")
        && words.get(1).is_some_and(|w| w != "stop")
        && v.get("error").is_none()
    {
        return wait_capture(&mut w, &mut r, text);
    }
    format(&line, &v, text)
}

/// After `capture ...`: ask `show capture` every 100 ms until it is done
/// (after [`CAPTURE_LIMIT`], `capture stop`).
fn wait_capture(w: &mut UnixStream, r: &mut BufReader<UnixStream>, text: bool) -> Output {
    let start = std::time::Instant::now();
    let mut stopping = false;
    loop {
        if !stopping && start.elapsed() > CAPTURE_LIMIT {
            stopping = true;
            let _ = ask(w, r, "capture stop");
        }
        let v = match ask(w, r, "show capture") {
            Ok(v) => v,
            Err(e) => return Output::Err(e),
        };
        if v["data"]["done"] == true {
            if let Some(e) = v["data"]["write_error"].as_str() {
                return Output::Err(format!("capture: {e}"));
            }
            return format("show capture", &v, text);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// How long `xfwd ctl ... capture` waits for its count.
pub const CAPTURE_LIMIT: Duration = Duration::from_secs(60);

fn ask(w: &mut UnixStream, r: &mut BufReader<UnixStream>, line: &str) -> Result<Value, String> {
    w.write_all(format!("{line}\n").as_bytes())
        .map_err(|e| format!("sending: {e}"))?;
    let mut reply = String::new();
    match r.read_line(&mut reply) {
        Ok(0) => Err("xfwd closed the connection".into()),
        Ok(_) => serde_json::from_str(&reply).map_err(|e| format!("bad reply ({e}): {reply}")),
        Err(e) => Err(format!("no reply: {e}")),
    }
}

/// What to print for reply `v` of `line`.
pub fn format(line: &str, v: &Value, text: bool) -> Output {
    if let Some(e) = v.get("error").and_then(Value::as_str) {
        return Output::Err(e.to_string());
    }
    let pretty = |v: &Value| serde_json::to_string_pretty(v).unwrap_or_default();
    if line.starts_with('/') {
        return Output::Ok(pretty(v));
    }
    let data = &v["data"];
    if !text && line.starts_with("show") && !data.is_null() {
        Output::Ok(pretty(data))
    } else {
        Output::Ok(v["text"].as_str().unwrap_or("").trim_end().to_string())
    }
}

/// `xfwd ctl`: print the reply; exit 0, or 1 when the command failed.
pub fn main(socket: &Path, words: &[String], text: bool) -> std::process::ExitCode {
    match run(socket, words, text) {
        Output::Ok(s) => {
            if s.is_empty() {
                return std::process::ExitCode::SUCCESS;
            }
            use std::io::Write;
            match writeln!(std::io::stdout().lock(), "{s}") {
                Ok(()) => std::process::ExitCode::SUCCESS,
                // A reader that stopped early (`xfwd ctl ... | head`) is not an error.
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
                    std::process::ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("xfwd ctl: error: writing the reply: {e}");
                    std::process::ExitCode::from(1)
                }
            }
        }
        Output::Err(e) => {
            eprintln!("xfwd ctl: error: {e}");
            std::process::ExitCode::from(1)
        }
    }
}
