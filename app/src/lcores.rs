//! The lcores: one pinned worker thread each, launched together and joined
//! at shutdown (their latency histograms merged, their errors collected).

use crate::error::RunError;
use crate::latency;
use crate::worker::{Worker, WorkerResult};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

/// A running worker thread.
pub type Handle = JoinHandle<Result<WorkerResult, RunError>>;

/// Spawn the workers; on a spawn failure the ones started are stopped.
pub fn launch(workers: Vec<Worker>, stop: &Arc<AtomicBool>) -> Result<Vec<Handle>, RunError> {
    let mut handles = Vec::new();
    for w in workers {
        let cpu = w.cpu;
        match std::thread::Builder::new()
            .name(format!("lcore{cpu}"))
            .spawn(move || w.run())
        {
            Ok(h) => handles.push(h),
            Err(source) => {
                stop.store(true, Ordering::Relaxed);
                let _ = join(handles);
                return Err(RunError::Spawn { lcore: cpu, source });
            }
        }
    }
    Ok(handles)
}

/// Join every worker; merge their latency histograms.
pub fn join(handles: Vec<Handle>) -> (hdrhistogram::Histogram<u64>, Vec<RunError>) {
    let mut hist = latency::histogram();
    let mut errors = Vec::new();
    for h in handles {
        let name = h.thread().name().unwrap_or("lcore?").to_string();
        match h.join() {
            Ok(Ok(r)) => {
                let _ = hist.add(&r.latency);
            }
            Ok(Err(e)) => errors.push(e),
            Err(_) => errors.push(RunError::WorkerPanic(
                name.trim_start_matches("lcore").parse().unwrap_or(u32::MAX),
            )),
        }
    }
    (hist, errors)
}
