//! Ctrl-C / SIGTERM: the first asks for a clean stop (the main thread sees
//! the count and shuts down in order), the second exits at once.

use crate::error::RunError;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Install the handler; the returned counter is the number of signals seen.
///
/// # Errors
/// [`RunError::Signal`] when a handler is already installed.
pub fn install() -> Result<Arc<AtomicUsize>, RunError> {
    let count = Arc::new(AtomicUsize::new(0));
    let c = count.clone();
    ctrlc::set_handler(move || {
        if c.fetch_add(1, Ordering::SeqCst) == 0 {
            eprintln!("\nxfwd: signal received: stopping (again to exit immediately)");
        } else {
            eprintln!("\nxfwd: second signal: exiting now");
            std::process::exit(130);
        }
    })?;
    Ok(count)
}
