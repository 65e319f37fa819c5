//! The run's standard output (the plan of `xfwd check`, the period lines,
//! the final report) written so that a reader that has gone
//! (`xfwd ... | head -1`) is not a panic, as `println!` would make it.
//!
//! The first failed write is kept and nothing more is written; the monitor
//! then stops the run as a signal would (clean tear-down, leak audit), and
//! the exit code is unchanged for a closed pipe (`EPIPE`: the reader
//! chose to stop reading) and 1, with the error on stderr, for any other
//! write error (`xfwd > /dev/full`). Never on the fast path: the main
//! thread alone writes here.

use std::io::{ErrorKind, Write};
use std::sync::Mutex;

/// The first write error, if one happened.
static FAILED: Mutex<Option<std::io::Error>> = Mutex::new(None);

/// Write `args` and a newline to stdout, unless a write failed before.
pub fn line(args: std::fmt::Arguments<'_>) {
    let mut failed = FAILED.lock().unwrap_or_else(|e| e.into_inner());
    if failed.is_some() {
        return;
    }
    let mut o = std::io::stdout().lock();
    if let Err(e) = o
        .write_fmt(args)
        .and_then(|()| o.write_all(b"\n"))
        .and_then(|()| o.flush())
    {
        *failed = Some(e);
    }
}

/// True once a write to stdout failed (the run should stop).
pub fn gone() -> bool {
    FAILED.lock().unwrap_or_else(|e| e.into_inner()).is_some()
}

/// The write error that should fail the run: any but a closed pipe.
pub fn error() -> Option<String> {
    let failed = FAILED.lock().unwrap_or_else(|e| e.into_inner());
    failed
        .as_ref()
        .filter(|e| e.kind() != ErrorKind::BrokenPipe)
        .map(|e| format!("writing to stdout: {e}"))
}

/// `println!` through [`line()`]: a closed stdout ends the output, not the
/// process.
#[macro_export]
macro_rules! outln {
    () => {
        $crate::out::line(format_args!(""))
    };
    ($($t:tt)*) => {
        $crate::out::line(format_args!($($t)*))
    };
}
