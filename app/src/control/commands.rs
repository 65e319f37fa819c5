//! The command table: every command of the prompt, the `--cmdline-file`
//! and the control socket, named as testpmd names them. Adding one is one
//! [`Command`] entry and one handler function:
//!
//! ```text
//! Command { name: "route add", args: "PREFIX PORT", help: "...", run: route_add },
//! fn route_add(c: &mut Control, dp: &mut Dataplane, args: &[&str]) -> Result<Reply, String>
//! ```
//!
//! A line is matched against the longest command name whose words it
//! starts with; the remaining words are the handler's arguments.

mod capture;
mod l3fwd;
mod port;
mod set;
mod show;

use super::{Control, Reply};
use crate::dataplane::Dataplane;
use capture::{capture_start, capture_stop, show_capture};
use l3fwd::{flow_add, flow_del, route_add, route_del, route_lookup, show_l3fwd};
use port::{port_config, port_start, port_stop};
use serde_json::{json, Value};
use set::{set_burst, set_eth_peer, set_fwd, set_rate, set_txpkts};
use show::{
    clear_port_stats, show_config_fwd, show_dma, show_lcores, show_mempool, show_port_info,
    show_port_stats, show_port_xstats,
};
use std::fmt::Write as _;

/// A handler: the control state, the data plane and the words
/// after the command's name.
pub type Handler = fn(&mut Control, &mut Dataplane, &[&str]) -> Result<Reply, String>;

/// One command.
#[derive(Debug, Clone, Copy)]
pub struct Command {
    /// Its words, space separated (`show port stats`).
    pub name: &'static str,
    /// Its arguments, for `help` and errors.
    pub args: &'static str,
    /// One line of help.
    pub help: &'static str,
    /// What runs it.
    pub run: Handler,
}

/// Every command.
pub const COMMANDS: &[Command] = &[
    Command { name: "start", args: "[tx_first]", help: "start forwarding (tx_first: one generated burst per forwarding stream first)", run: start },
    Command { name: "stop", args: "", help: "stop forwarding (lcores park; ports stay started and mapped) and print the forward stats", run: stop },
    Command { name: "show port stats", args: "all|N", help: "NIC statistics (since `clear port stats`) and rates since the last show", run: show_port_stats },
    Command { name: "show port xstats", args: "all|N", help: "a port's extended statistics", run: show_port_xstats },
    Command { name: "show port info", args: "all|N", help: "driver, devargs, MAC, peer, link, DMA mapping kind, queues", run: show_port_info },
    Command { name: "clear port stats", args: "all|N", help: "reset the NIC statistics shown (the final report still counts the whole run)", run: clear_port_stats },
    Command { name: "show fwd stats", args: "all", help: "forward statistics per port since the last `start`", run: show_fwd_stats },
    Command { name: "clear fwd stats", args: "all", help: "restart the forward statistics window", run: clear_fwd_stats },
    Command { name: "set fwd", args: "MODE", help: "forwarding mode of every lcore (stopped only): io mac macswap 5tswap rxonly txonly flowgen icmpecho", run: set_fwd },
    Command { name: "set burst", args: "N", help: "packets per burst, 1..512 (stopped only)", run: set_burst },
    Command { name: "set txpkts", args: "N", help: "generated frame length in bytes, 60..9000 (stopped only)", run: set_txpkts },
    Command { name: "set eth-peer", args: "N MAC", help: "peer MAC of port N: mac mode destination, generator destination (stopped only)", run: set_eth_peer },
    Command { name: "set rate", args: "PPS|off", help: "generator rate per stream: 250000, 200k, 1.5M, or off (stopped only)", run: set_rate },
    Command { name: "port stop", args: "all|N", help: "stop port N's driver (forwarding stopped only): the lcores give its queues back, every mbuf it held returns to the pool; mappings stay", run: port_stop },
    Command { name: "port start", args: "all|N", help: "start port N's driver again and hand its new queues to their lcores (forwarding stopped only)", run: port_start },
    Command { name: "port config", args: "all|N rxd|txd N", help: "ring sizes of a stopped port (it must be stopped and says so), used from the next `port start`; its counters go on", run: port_config },
    Command { name: "show config fwd", args: "", help: "mode, burst, lcores and their streams", run: show_config_fwd },
    Command { name: "show mempool", args: "", help: "the mbuf pool: capacity, available, in caches, memory", run: show_mempool },
    Command { name: "show dma", args: "", help: "every DMA mapping: port, VA, IOVA, length, kind", run: show_dma },
    Command { name: "show lcores", args: "", help: "lcore time accounting and stream counters", run: show_lcores },
    Command { name: "capture", args: "PORT[:QUEUE] rx|tx|both --count N -w FILE.pcapng", help: "copy N frames of a running port into a pcapng file (bounded per-lcore copy budget; frames not copied are counted, never dropped)", run: capture_start },
    Command { name: "capture stop", args: "", help: "end the live capture now", run: capture_stop },
    Command { name: "show capture", args: "", help: "the live (or last) capture: frames taken, skipped, written", run: show_capture },
    Command { name: "show l3fwd", args: "", help: "l3fwd: the tables (lookup kind, generation, entries, next hops) and drops per port", run: show_l3fwd },
    Command { name: "route add", args: "PREFIX PORT [VIA] | PREFIX via VIA", help: "l3fwd: add or replace a route (next hop: the VIA neighbour's MAC, else the port's --eth-dest)", run: route_add },
    Command { name: "route del", args: "PREFIX", help: "l3fwd: delete a route", run: route_del },
    Command { name: "route lookup", args: "ADDR", help: "l3fwd: the next hop ADDR gets now", run: route_lookup },
    Command { name: "flow add", args: "SRC DST SPORT DPORT PROTO PORT [VIA]", help: "l3fwd (EM): add or replace a flow", run: flow_add },
    Command { name: "flow del", args: "SRC DST SPORT DPORT PROTO", help: "l3fwd (EM): delete a flow", run: flow_del },
    Command { name: "help", args: "", help: "this list", run: help },
    Command { name: "quit", args: "", help: "stop forwarding, tear down, print the final report and exit", run: quit },
];

/// The command names (for the socket's hello and completion).
pub fn names() -> Vec<&'static str> {
    COMMANDS.iter().map(|c| c.name).collect()
}

/// Find the command of `line` and run it.
///
/// # Errors
/// A one-line text: unknown or incomplete command, bad arguments, or what
/// the handler refused.
pub fn run(c: &mut Control, dp: &mut Dataplane, line: &str) -> Result<Reply, String> {
    let words: Vec<&str> = line.split_whitespace().collect();
    if words.is_empty() {
        return Ok(Reply::default());
    }
    let best = COMMANDS
        .iter()
        .filter(|cmd| {
            let n: Vec<&str> = cmd.name.split(' ').collect();
            words.len() >= n.len() && words[..n.len()] == n[..]
        })
        .max_by_key(|cmd| cmd.name.split(' ').count());
    let Some(cmd) = best else {
        let starts: Vec<String> = COMMANDS
            .iter()
            .filter(|cmd| cmd.name.starts_with(words[0]) || cmd.name.starts_with(&words.join(" ")))
            .map(|cmd| format!("{} {}", cmd.name, cmd.args).trim_end().to_string())
            .collect();
        return Err(
            if starts.is_empty()
                || !COMMANDS
                    .iter()
                    .any(|cmd| cmd.name.split(' ').next() == Some(words[0]))
            {
                format!("unknown command `{line}`: `help` lists the commands")
            } else {
                format!("incomplete command `{line}`: {}", starts.join(" | "))
            },
        );
    };
    let args = &words[cmd.name.split(' ').count()..];
    (cmd.run)(c, dp, args).map_err(|e| {
        if e.starts_with("usage") {
            format!("{e}: {} {}", cmd.name, cmd.args)
        } else {
            e
        }
    })
}

fn no_args(args: &[&str]) -> Result<(), String> {
    if args.is_empty() {
        Ok(())
    } else {
        Err(format!("usage: unexpected `{}`", args.join(" ")))
    }
}

/// `all` or one port id: the ports named.
fn ports(dp: &Dataplane, args: &[&str]) -> Result<Vec<u16>, String> {
    let ids: Vec<u16> = dp.ports().iter().map(|p| p.id).collect();
    match args {
        ["all"] => Ok(ids),
        [n] => match n.parse::<u16>() {
            Ok(n) if ids.contains(&n) => Ok(vec![n]),
            _ => Err(format!("no port `{n}`: ports are {ids:?} (or `all`)")),
        },
        _ => Err("usage: all or a port id expected".into()),
    }
}

fn stopped_only(c: &Control, what: &str) -> Result<(), String> {
    if c.running {
        Err(format!(
            "{what} needs forwarding stopped: `stop` first, then `start`"
        ))
    } else {
        Ok(())
    }
}

fn start(c: &mut Control, dp: &mut Dataplane, args: &[&str]) -> Result<Reply, String> {
    let tx_first = match args {
        [] => false,
        ["tx_first"] => true,
        _ => return Err("usage: `start` or `start tx_first`".into()),
    };
    if c.running {
        return Err("forwarding is already started".into());
    }
    c.resume(dp, tx_first)?;
    let mut r = show_config_fwd(c, dp, &[])?;
    r.text = format!("{}\n{}", "Forwarding started", r.text);
    Ok(r)
}

fn stop(c: &mut Control, dp: &mut Dataplane, args: &[&str]) -> Result<Reply, String> {
    no_args(args)?;
    if !c.running {
        return Err("forwarding is not started: `start` first".into());
    }
    c.park(dp)?;
    let mut r = fwd_stats(c, dp);
    r.text = format!(
        "Telling cores to stop...\nWaiting for lcores to finish...\n{}\nDone.",
        r.text
    );
    Ok(r)
}

/// testpmd's RX/TX lines of a forward statistics block.
fn fwd_lines(t: &mut String, f: &Value, missed: u64) {
    let g = |k: &str| f[k].as_u64().unwrap_or(0);
    let _ = writeln!(
        t,
        "  RX-packets: {:<14} RX-dropped: {:<14} RX-total: {}",
        g("rx_packets"),
        missed,
        g("rx_packets") + missed
    );
    let _ = writeln!(
        t,
        "  TX-packets: {:<14} TX-dropped: {:<14} TX-total: {}",
        g("tx_packets"),
        g("tx_dropped"),
        g("tx_packets") + g("tx_dropped")
    );
}

fn fwd_stats(c: &Control, dp: &Dataplane) -> Reply {
    let per = c.fwd_since_start(dp);
    let mut t = String::new();
    let mut acc = json!({});
    let mut ports = Vec::new();
    let mut missed_all = 0;
    for (id, f) in &per {
        acc = super::json_combine(&acc, f, u64::saturating_add);
        let missed = c.missed_since_start(dp, *id);
        missed_all += missed;
        let _ = writeln!(
            t,
            "\n  ---------------------- Forward statistics for port {id:<2} ----------------------"
        );
        fwd_lines(&mut t, f, missed);
        let _ = writeln!(t, "  {}", "-".repeat(76));
        ports.push(json!({"port": id, "fwd": f, "rx_missed": missed}));
    }
    let _ = writeln!(
        t,
        "\n  +++++++++++++++ Accumulated forward statistics for all ports +++++++++++++++"
    );
    fwd_lines(&mut t, &acc, missed_all);
    let _ = write!(t, "  {}", "+".repeat(76));
    Reply {
        text: t,
        data: json!({"ports": ports, "accumulated": acc, "rx_missed": missed_all}),
    }
}

fn show_fwd_stats(c: &mut Control, dp: &mut Dataplane, args: &[&str]) -> Result<Reply, String> {
    if args != ["all"] {
        return Err("usage: `show fwd stats all`".into());
    }
    Ok(fwd_stats(c, dp))
}

fn clear_fwd_stats(c: &mut Control, dp: &mut Dataplane, args: &[&str]) -> Result<Reply, String> {
    if args != ["all"] {
        return Err("usage: `clear fwd stats all`".into());
    }
    c.mark_window(dp);
    Ok(Reply::text("  Forward statistics cleared"))
}
fn number<T: std::str::FromStr>(args: &[&str], what: &str) -> Result<T, String> {
    match args {
        [n] => n
            .parse()
            .map_err(|_| format!("`{n}` is not a valid {what}")),
        _ => Err(format!("usage: {what} expected")),
    }
}

fn help(_c: &mut Control, _dp: &mut Dataplane, _args: &[&str]) -> Result<Reply, String> {
    let mut t = String::new();
    for cmd in COMMANDS {
        let _ = writeln!(
            t,
            "  {:<34} {}",
            format!("{} {}", cmd.name, cmd.args).trim_end(),
            cmd.help
        );
    }
    let _ = write!(t, "  (in a --cmdline-file also: sleep MS)");
    let data: Vec<Value> = COMMANDS
        .iter()
        .map(|c| json!({"command": c.name, "args": c.args, "help": c.help}))
        .collect();
    Ok(Reply {
        text: t,
        data: Value::Array(data),
    })
}

fn quit(c: &mut Control, _dp: &mut Dataplane, args: &[&str]) -> Result<Reply, String> {
    no_args(args)?;
    c.quit = true;
    Ok(Reply::text("Bye..."))
}
