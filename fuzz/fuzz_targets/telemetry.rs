//! Telemetry queries (`/ports`, `/ports/N/stats`, ...) answered against a
//! real, started data plane (heap memory, two null ports, one ring pair),
//! framed as the server frames them: one query per line.
//!
//! Invariants: no panic; every answer is a JSON object or array that
//! serializes; a query the server does not know gets an `error` naming it.
#![no_main]

#[path = "common.rs"]
mod common;

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use xfwd::dataplane::Dataplane;
use xfwd::telemetry::answer;
use xfwd::worker::Worker;

fn dataplane() -> (Dataplane, Vec<Worker>) {
    Dataplane::setup(
        common::plan(&common::config("macswap", "fuzz")),
        &Arc::new(AtomicBool::new(false)),
    )
    .expect("data plane")
}

thread_local! {
    static DP: (Dataplane, Vec<Worker>) = dataplane();
}

fuzz_target!(|data: &[u8]| {
    DP.with(|(dp, _)| {
        for line in data.split(|&b| b == b'\n') {
            let q = String::from_utf8_lossy(line);
            let q = q.trim();
            let a = answer(q, dp);
            assert!(a.is_object() || a.is_array(), "`{q}` → {a}");
            let text = a.to_string();
            assert!(!text.contains('\n'), "an answer spans lines");
            if let Value::Object(o) = &a {
                if let Some(e) = o.get("error") {
                    assert!(e.as_str().is_some_and(|e| !e.is_empty()));
                }
            }
        }
    });
});
