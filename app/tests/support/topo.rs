//! The veth topology of the kernel-port end-to-end tests: three network
//! namespaces the test creates (removed by their RAII guards), a generator,
//! the device under test and a sink, and one forwarding path per pair:
//!
//! ```text
//! gen: g0 ⇄ d0 ─[xfwd in dut]─ d1 ⇄ s1 :sink      ["g0", "d0", "d1", "s1"]
//! gen: g2 ⇄ d2 ─[xfwd in dut]─ d3 ⇄ s3 :sink      ["g2", "d2", "d3", "s3"]
//! ```
//!
//! Used through the app support module (`support::topo`) or on its own next
//! to the pmd support module (`#[path = "support/topo.rs"] mod topo;`): in
//! both, `crate::support::netns` is the namespace guard.

use crate::support::netns::Netns;
use std::process::Command;

/// The three namespaces. Fields drop in order (gen, dut, sink); each guard
/// deletes the veth ends it created before its namespace.
pub struct Topo {
    pub gen: Netns,
    pub dut: Netns,
    pub sink: Netns,
}

impl Topo {
    /// Namespaces tagged `{tag}g`, `{tag}d`, `{tag}s` and, per path
    /// `[gen end, dut in, dut out, sink end]`, a veth pair gen ⇄ dut and a
    /// veth pair dut ⇄ sink (created in that order, path after path).
    pub fn new(tag: &str, paths: &[[&str; 4]]) -> Topo {
        let gen = Netns::new(&format!("{tag}g"));
        let dut = Netns::new(&format!("{tag}d"));
        let sink = Netns::new(&format!("{tag}s"));
        for [g, d_in, d_out, s] in paths {
            gen.veth(g, &dut, d_in);
            dut.veth(d_out, &sink, s);
        }
        Topo { gen, dut, sink }
    }

    /// The `xfwd` binary run inside the DUT namespace (`ip netns exec`,
    /// which execs it: the child's PID is xfwd's) with a `--port` per
    /// devargs in `ports`, then `args`; `RUST_LOG=warn`.
    pub fn xfwd(&self, ports: &[String], args: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", self.dut.name(), env!("CARGO_BIN_EXE_xfwd")]);
        for p in ports {
            c.args(["--port", p]);
        }
        c.args(args).env("RUST_LOG", "warn");
        c
    }
}
