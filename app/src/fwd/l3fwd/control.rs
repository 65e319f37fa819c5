//! Run-time route changes through the telemetry socket:
//!
//! ```text
//! /l3fwd                                  the tables, their generation, drops per port
//! /l3fwd/route/add PREFIX PORT [VIA]      add or replace (next hop: the VIA neighbour's
//!                                         MAC, else the port's --eth-dest)
//! /l3fwd/route/add PREFIX via VIA         (the neighbour's port)
//! /l3fwd/route/del PREFIX
//! /l3fwd/flow/add SRC DST SPORT DPORT PROTO PORT [VIA]
//! /l3fwd/flow/del SRC DST SPORT DPORT PROTO
//! /l3fwd/lookup ADDR                      the next hop ADDR gets now
//! ```
//!
//! A `via` names a neighbour of the configuration (`[[neighbor]]`,
//! `--neighbor`): its MAC and port are the next hop, as for the file's
//! routes. Each change clones the current snapshot, edits the clone and publishes
//! it ([`super::table::Shared::update`]): lcores switch between bursts, so
//! no packet is ever looked up in a half-updated table.

use super::table::{Flow, Prefix, TableError};
use crate::dataplane::Dataplane;
use serde_json::{json, Value};
use std::net::IpAddr;

/// The telemetry commands (for `/help`).
pub const COMMANDS: &[&str] = &[
    "/l3fwd",
    "/l3fwd/route/add PREFIX PORT [VIA] | PREFIX via VIA",
    "/l3fwd/route/del PREFIX",
    "/l3fwd/flow/add SRC DST SPORT DPORT PROTO PORT [VIA]",
    "/l3fwd/flow/del SRC DST SPORT DPORT PROTO",
    "/l3fwd/lookup ADDR",
];

fn hop_json(t: &super::Tables, id: Option<u32>) -> Value {
    match id.and_then(|i| t.hops.get(i as usize)) {
        Some(h) => json!({"port": h.port, "mac": xfwd_pmd::port::mac_string(&h.mac)}),
        None => Value::Null,
    }
}

/// Answer `/l3fwd...` (`rest` is what follows `/l3fwd`).
pub fn answer(rest: &str, dp: &Dataplane) -> Value {
    let Some(sh) = dp.l3fwd() else {
        return json!({"error": "the forwarding mode is not l3fwd"});
    };
    sh.retire(None);
    let rest = rest.trim();
    let (cmd, arg) = rest.split_once(' ').unwrap_or((rest, ""));
    let arg = arg.trim();
    let done = |r: Result<(), TableError>| match r {
        Ok(()) => json!({"ok": true, "generation": sh.generation()}),
        Err(e) => json!({"error": e.to_string()}),
    };
    match cmd.trim_end_matches('/') {
        "" => {
            let t = sh.current();
            let ports: Vec<Value> = dp
                .ports()
                .iter()
                .map(|p| {
                    let mut f = crate::stats::PortFwd::default();
                    for s in dp
                        .streams()
                        .iter()
                        .filter(|s| s.rx.is_some_and(|q| q.port == p.id))
                    {
                        let c = s.counters.read();
                        f.no_route += c.no_route;
                        f.ttl_exceeded += c.ttl_exceeded;
                        f.bad_header += c.bad_header;
                        f.non_ip += c.non_ip;
                        f.vlan += c.vlan;
                    }
                    json!({"port": p.id, "no_route": f.no_route, "ttl_exceeded": f.ttl_exceeded,
                        "bad_header": f.bad_header, "non_ip": f.non_ip, "vlan_forwarded": f.vlan})
                })
                .collect();
            json!({"lookup": t.lookup, "generation": t.generation, "entries": t.len(),
                "next_hops": t.hops.len(), "tables": t.describe(), "drops": ports,
                "updates": sh.update_stats()})
        }
        "/route/add" | "/flow/add" => {
            let t = sh.current();
            let what = if cmd.starts_with("/route") {
                "route add"
            } else {
                "flow add"
            };
            match super::config::runtime_entry(what, arg, &t) {
                Err(e) => json!({"error": e}),
                Ok((Some(p), None, hop)) if cmd.starts_with("/route") => {
                    done(sh.update(move |t| t.add_route(p, hop)))
                }
                Ok((None, Some(f), hop)) if cmd.starts_with("/flow") => {
                    done(sh.update(move |t| t.add_flow(f, hop)))
                }
                Ok(_) => {
                    json!({"error": format!("`{arg}`: a route is PREFIX PORT, a flow SRC DST SPORT DPORT PROTO PORT")})
                }
            }
        }
        "/route/del" => match Prefix::parse(arg) {
            Ok(p) => done(sh.update(move |t| t.delete_route(p))),
            Err(e) => json!({"error": e}),
        },
        "/flow/del" => match parse_flow(arg) {
            Ok(f) => done(sh.update(move |t| t.delete_flow(f))),
            Err(e) => json!({"error": e}),
        },
        "/lookup" => match arg.parse::<IpAddr>() {
            Ok(IpAddr::V4(a)) => {
                let t = sh.current();
                let id = t.v4.as_ref().and_then(|l| l.lookup(a.into()));
                json!({"generation": t.generation, "hop": hop_json(&t, id)})
            }
            Ok(IpAddr::V6(a)) => {
                let t = sh.current();
                let id = t.v6.as_ref().and_then(|l| l.lookup(a.into()));
                json!({"generation": t.generation, "hop": hop_json(&t, id)})
            }
            Err(_) => json!({"error": format!("`{arg}` is not an address")}),
        },
        _ => json!({"error": format!("unknown l3fwd command `{rest}`"), "commands": COMMANDS}),
    }
}

fn parse_flow(arg: &str) -> Result<Flow, String> {
    // A flow line with a dummy port, through the same parser as the file.
    let probe = format!("{arg} 0");
    match super::config::parse_flow_line(&probe) {
        Some(f) => Ok(f),
        None => Err(format!("`{arg}`: SRC DST SPORT DPORT PROTO expected")),
    }
}
