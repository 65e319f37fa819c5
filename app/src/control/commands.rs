//! The command table: every command of the prompt, the `--cmdline-file`
//! and the control socket, named as testpmd names them. Adding one is one
//! [`Command`] entry and one handler function:
//!
//! ```text
//! Command { name: "route add", args: "PREFIX via IP dev N", help: "...", run: route_add },
//! fn route_add(c: &mut Control, dp: &Dataplane, args: &[&str]) -> Result<Reply, String>
//! ```
//!
//! A line is matched against the longest command name whose words it
//! starts with; the remaining words are the handler's arguments.

use super::{Control, Reply};
use crate::dataplane::Dataplane;
use crate::fwd::FwdMode;
use serde_json::{json, Value};
use std::fmt::Write as _;
use std::time::Instant;
use xfwd_pmd::port::{mac_string, parse_mac};

/// A handler: the control state, the data plane (read-only) and the words
/// after the command's name.
pub type Handler = fn(&mut Control, &Dataplane, &[&str]) -> Result<Reply, String>;

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
    Command { name: "port stop", args: "all|N", help: "stop polling and sending on port N's queues (stopped only; the port stays configured and mapped)", run: port_stop },
    Command { name: "port start", args: "all|N", help: "poll port N's queues again (stopped only)", run: port_start },
    Command { name: "show config fwd", args: "", help: "mode, burst, lcores and their streams", run: show_config_fwd },
    Command { name: "show mempool", args: "", help: "the mbuf pool: capacity, available, in caches, memory", run: show_mempool },
    Command { name: "show dma", args: "", help: "every DMA mapping: port, VA, IOVA, length, kind", run: show_dma },
    Command { name: "show lcores", args: "", help: "lcore time accounting and stream counters", run: show_lcores },
    Command { name: "capture", args: "PORT[:QUEUE] rx|tx|both --count N -w FILE.pcapng", help: "copy N frames of a running port into a pcapng file (bounded per-lcore copy budget; frames not copied are counted, never dropped)", run: capture_start },
    Command { name: "capture stop", args: "", help: "end the live capture now", run: capture_stop },
    Command { name: "show capture", args: "", help: "the live (or last) capture: frames taken, skipped, written", run: show_capture },
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
pub fn run(c: &mut Control, dp: &Dataplane, line: &str) -> Result<Reply, String> {
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

fn start(c: &mut Control, dp: &Dataplane, args: &[&str]) -> Result<Reply, String> {
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

fn stop(c: &mut Control, dp: &Dataplane, args: &[&str]) -> Result<Reply, String> {
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

fn show_fwd_stats(c: &mut Control, dp: &Dataplane, args: &[&str]) -> Result<Reply, String> {
    if args != ["all"] {
        return Err("usage: `show fwd stats all`".into());
    }
    Ok(fwd_stats(c, dp))
}

fn clear_fwd_stats(c: &mut Control, dp: &Dataplane, args: &[&str]) -> Result<Reply, String> {
    if args != ["all"] {
        return Err("usage: `clear fwd stats all`".into());
    }
    c.mark_window(dp);
    Ok(Reply::text("  Forward statistics cleared"))
}

fn show_port_stats(c: &mut Control, dp: &Dataplane, args: &[&str]) -> Result<Reply, String> {
    let mut t = String::new();
    let mut data = Vec::new();
    let now = Instant::now();
    for id in ports(dp, args)? {
        let s = c.port_stats(dp, id).expect("port exists");
        let raw = dp
            .ports()
            .iter()
            .find(|p| p.id == id)
            .expect("port exists")
            .port
            .stats();
        let (rx_pps, tx_pps, rx_bps, tx_bps) = match c.last_show.get(&id) {
            Some((prev, at)) => {
                let dt = now.duration_since(*at).as_secs_f64().max(1e-9);
                let r = |a: u64, b: u64| (a.saturating_sub(b) as f64 / dt) as u64;
                (
                    r(raw.ipackets, prev.ipackets),
                    r(raw.opackets, prev.opackets),
                    8 * r(raw.ibytes, prev.ibytes),
                    8 * r(raw.obytes, prev.obytes),
                )
            }
            None => (0, 0, 0, 0),
        };
        c.last_show.insert(id, (raw, now));
        let _ = writeln!(
            t,
            "\n  ######################## NIC statistics for port {id:<2} ########################"
        );
        let _ = writeln!(
            t,
            "  RX-packets: {:<10} RX-missed: {:<10} RX-bytes:  {}",
            s.ipackets, s.imissed, s.ibytes
        );
        let _ = writeln!(t, "  RX-errors: {}", s.ierrors);
        let _ = writeln!(t, "  RX-nombuf:  {:<10}", s.rx_nombuf);
        let _ = writeln!(
            t,
            "  TX-packets: {:<10} TX-errors: {:<10} TX-bytes:  {}",
            s.opackets, s.oerrors, s.obytes
        );
        let _ = writeln!(t, "\n  Throughput (since last show)");
        let _ = writeln!(t, "  Rx-pps: {rx_pps:>12}          Rx-bps: {rx_bps:>12}");
        let _ = writeln!(t, "  Tx-pps: {tx_pps:>12}          Tx-bps: {tx_bps:>12}");
        let _ = writeln!(
            t,
            "  ############################################################################"
        );
        data.push(
            json!({"port": id, "rx_packets": s.ipackets, "tx_packets": s.opackets,
            "rx_bytes": s.ibytes, "tx_bytes": s.obytes, "rx_missed": s.imissed,
            "rx_errors": s.ierrors, "tx_errors": s.oerrors, "rx_nombuf": s.rx_nombuf,
            "rx_pps": rx_pps, "tx_pps": tx_pps, "rx_bps": rx_bps, "tx_bps": tx_bps}),
        );
    }
    Ok(Reply {
        text: t,
        data: Value::Array(data),
    })
}

fn show_port_xstats(_c: &mut Control, dp: &Dataplane, args: &[&str]) -> Result<Reply, String> {
    let mut t = String::new();
    let mut data = Vec::new();
    for id in ports(dp, args)? {
        let p = dp.ports().iter().find(|p| p.id == id).expect("port exists");
        let _ = writeln!(t, "###### NIC extended statistics for port {id:<2}");
        let xs = p.port.xstats();
        for (k, v) in &xs {
            let _ = writeln!(t, "{k}: {v}");
        }
        let obj: serde_json::Map<String, Value> =
            xs.into_iter().map(|(k, v)| (k, json!(v))).collect();
        data.push(json!({"port": id, "xstats": obj}));
    }
    Ok(Reply {
        text: t,
        data: Value::Array(data),
    })
}

fn show_port_info(c: &mut Control, dp: &Dataplane, args: &[&str]) -> Result<Reply, String> {
    let mut t = String::new();
    let mut data = Vec::new();
    for id in ports(dp, args)? {
        let p = dp.ports().iter().find(|p| p.id == id).expect("port exists");
        let l = p.port.link();
        let peer = *c.settings.peers.get(&id).unwrap_or(&p.peer_mac);
        let st = p.port.stats();
        let polled = !c.settings.stopped_ports.contains(&id);
        let _ = writeln!(
            t,
            "\n********************* Infos for port {id:<2} *********************"
        );
        let _ = writeln!(t, "MAC address: {}", mac_string(&p.info.mac));
        let _ = writeln!(t, "Device name: {}", p.info.devargs);
        let _ = writeln!(t, "Driver name: {}", p.info.driver);
        let _ = writeln!(t, "Peer MAC: {}", mac_string(&peer));
        let _ = writeln!(t, "Link status: {}", if l.up { "up" } else { "down" });
        let _ = writeln!(t, "Link speed: {} Mbps", l.speed_mbps);
        let _ = writeln!(
            t,
            "Polled: {}",
            if polled { "yes" } else { "no (port stop)" }
        );
        let _ = writeln!(t, "DMA mapping: {}", p.info.mapping);
        let _ = writeln!(
            t,
            "RX queues: {}  TX queues: {}",
            st.rxq.len(),
            st.txq.len()
        );
        data.push(
            json!({"port": id, "driver": p.info.driver, "devargs": p.info.devargs,
            "mac": mac_string(&p.info.mac), "peer": mac_string(&peer), "link_up": l.up,
            "speed_mbps": l.speed_mbps, "polled": polled, "mapping": p.info.mapping.to_string(),
            "rx_queues": st.rxq.len(), "tx_queues": st.txq.len()}),
        );
    }
    Ok(Reply {
        text: t,
        data: Value::Array(data),
    })
}

fn clear_port_stats(c: &mut Control, dp: &Dataplane, args: &[&str]) -> Result<Reply, String> {
    let mut t = String::new();
    for id in ports(dp, args)? {
        let p = dp.ports().iter().find(|p| p.id == id).expect("port exists");
        let s = p.port.stats();
        c.last_show.insert(id, (s.clone(), Instant::now()));
        c.port_base.insert(id, s);
        let _ = writeln!(t, "\n  NIC statistics for port {id} cleared");
    }
    Ok(Reply::text(t))
}

fn set_fwd(c: &mut Control, _dp: &Dataplane, args: &[&str]) -> Result<Reply, String> {
    let [m] = args else {
        return Err(format!("usage: a mode expected ({})", FwdMode::accepted()));
    };
    let mode = FwdMode::parse(m)
        .ok_or_else(|| format!("unknown mode `{m}`: accepted: {}", FwdMode::accepted()))?;
    if mode == FwdMode::L3fwd || c.settings.modes.contains(&FwdMode::L3fwd) {
        return Err("l3fwd is chosen at start-up (--forward-mode l3fwd: its tables and TX map are built then); it cannot be switched to or from at run time".into());
    }
    stopped_only(c, "set fwd")?;
    c.settings.modes.iter_mut().for_each(|x| *x = mode);
    c.settings.dirty = true;
    Ok(Reply::text(format!("Set {mode} packet forwarding mode")))
}

fn number<T: std::str::FromStr>(args: &[&str], what: &str) -> Result<T, String> {
    match args {
        [n] => n
            .parse()
            .map_err(|_| format!("`{n}` is not a valid {what}")),
        _ => Err(format!("usage: {what} expected")),
    }
}

fn set_burst(c: &mut Control, _dp: &Dataplane, args: &[&str]) -> Result<Reply, String> {
    let n: usize = number(args, "burst size")?;
    if !(1..=xfwd_mempool::MAX_BURST).contains(&n) {
        return Err(format!(
            "burst {n} out of range: 1..={}",
            xfwd_mempool::MAX_BURST
        ));
    }
    stopped_only(c, "set burst")?;
    c.settings.burst = n;
    c.settings.dirty = true;
    Ok(Reply::text(format!(
        "Number of packets per burst set to {n}"
    )))
}

fn set_txpkts(c: &mut Control, dp: &Dataplane, args: &[&str]) -> Result<Reply, String> {
    let n: usize = number(args, "frame length")?;
    let room = dp
        .pool()
        .map_or(usize::MAX, |p| p.stats().data_room as usize);
    if !(60..=9000).contains(&n) || n > room {
        return Err(format!(
            "frame length {n} out of range: 60..=9000 and at most the mbuf data room ({room} B)"
        ));
    }
    stopped_only(c, "set txpkts")?;
    c.settings.gen.pkt_len = n;
    c.settings.gen.mix.clear();
    c.settings.dirty = true;
    Ok(Reply::text(format!("Generated frames are {n} B")))
}

fn set_eth_peer(c: &mut Control, dp: &Dataplane, args: &[&str]) -> Result<Reply, String> {
    let [n, mac] = args else {
        return Err("usage: a port id and a MAC expected".into());
    };
    let id = ports(dp, &[n])?[0];
    let mac = parse_mac(mac).ok_or_else(|| format!("`{mac}` is not a MAC (aa:bb:cc:dd:ee:ff)"))?;
    stopped_only(c, "set eth-peer")?;
    c.settings.peers.insert(id, mac);
    c.settings.dirty = true;
    Ok(Reply::text(format!(
        "Peer of port {id} is {}",
        mac_string(&mac)
    )))
}

fn set_rate(c: &mut Control, _dp: &Dataplane, args: &[&str]) -> Result<Reply, String> {
    let rate = match args {
        ["off" | "0"] => None,
        [r] => match crate::fwd::txgen::parse_rate(r, 0.0, c.settings.gen.pkt_len as f64) {
            Some(pps) if pps > 0.0 && pps.is_finite() && !r.ends_with('%') => Some(pps),
            _ => {
                return Err(format!(
                    "`{r}` is not a rate: packets/s like 250000, 200k, 1.5M, or off"
                ))
            }
        },
        _ => return Err("usage: a rate expected".into()),
    };
    stopped_only(c, "set rate")?;
    c.settings.gen.rate_pps = rate;
    c.settings.dirty = true;
    Ok(Reply::text(match rate {
        Some(p) => format!("Generator rate {p:.0} packets/s per stream"),
        None => "Generator rate unlimited".into(),
    }))
}

fn port_state(c: &mut Control, dp: &Dataplane, args: &[&str], stop: bool) -> Result<Reply, String> {
    let ids = ports(dp, args)?;
    stopped_only(c, if stop { "port stop" } else { "port start" })?;
    for id in &ids {
        if stop {
            c.settings.stopped_ports.insert(*id);
        } else {
            c.settings.stopped_ports.remove(id);
        }
    }
    c.settings.dirty = true;
    Ok(Reply::text(format!(
        "Port{} {ids:?}: {}",
        if ids.len() > 1 { "s" } else { "" },
        if stop {
            "not polled from the next `start`"
        } else {
            "polled from the next `start`"
        }
    )))
}

fn port_stop(c: &mut Control, dp: &Dataplane, args: &[&str]) -> Result<Reply, String> {
    port_state(c, dp, args, true)
}

fn port_start(c: &mut Control, dp: &Dataplane, args: &[&str]) -> Result<Reply, String> {
    port_state(c, dp, args, false)
}

fn show_config_fwd(c: &mut Control, dp: &Dataplane, args: &[&str]) -> Result<Reply, String> {
    no_args(args)?;
    let s = &c.settings;
    let mut modes: Vec<&str> = s.modes.iter().map(|m| m.name()).collect();
    modes.dedup();
    let mut t = format!(
        "{} packet forwarding{} - ports={} - cores={} - streams={} - burst={} - txpkts={}{}\n",
        modes.join("/"),
        if c.running { "" } else { " (stopped)" },
        dp.ports().len(),
        dp.lcores().len(),
        dp.streams().len(),
        s.burst,
        s.gen.pkt_len,
        s.gen
            .rate_pps
            .map_or(String::new(), |r| format!(" - rate={r:.0} pps")),
    );
    let mut lcores = Vec::new();
    for (i, l) in dp.lcores().iter().enumerate() {
        let streams: Vec<_> = dp.streams().iter().filter(|x| x.cpu == l.cpu).collect();
        let _ = writeln!(
            t,
            "Logical Core {} ({}) forwards packets on {} streams:",
            l.cpu,
            s.modes[i],
            streams.len()
        );
        let mut sj = Vec::new();
        for st in streams {
            let rx = st
                .rx
                .map_or("-".to_string(), |q| format!("P={}/Q={}", q.port, q.queue));
            let tx = st
                .tx
                .map_or("-".to_string(), |q| format!("P={}/Q={}", q.port, q.queue));
            let peer = st
                .tx
                .and_then(|q| dp.ports().iter().find(|p| p.id == q.port))
                .map(|p| *s.peers.get(&p.id).unwrap_or(&p.peer_mac));
            let _ = writeln!(
                t,
                "  RX {rx} -> TX {tx}{}",
                peer.map_or(String::new(), |m| format!(" peer={}", mac_string(&m)))
            );
            sj.push(
                json!({"rx": st.rx.map(|q| q.to_string()), "tx": st.tx.map(|q| q.to_string()),
                "peer": peer.map(|m| mac_string(&m))}),
            );
        }
        lcores.push(json!({"lcore": l.cpu, "mode": s.modes[i], "streams": sj}));
    }
    Ok(Reply {
        text: t,
        data: json!({"running": c.running, "modes": s.modes, "burst": s.burst, "txpkts": s.gen.pkt_len,
            "rate_pps": s.gen.rate_pps, "stopped_ports": s.stopped_ports, "lcores": lcores}),
    })
}

fn json_text(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_default()
}

fn show_mempool(_c: &mut Control, dp: &Dataplane, args: &[&str]) -> Result<Reply, String> {
    no_args(args)?;
    let v = crate::telemetry::answer("/mempool", dp);
    Ok(Reply {
        text: json_text(&v),
        data: v,
    })
}

fn show_dma(_c: &mut Control, dp: &Dataplane, args: &[&str]) -> Result<Reply, String> {
    no_args(args)?;
    let v = crate::telemetry::answer("/dma", dp);
    let mut t = String::from("port  va                  iova                len          kind\n");
    for p in v.as_array().into_iter().flatten() {
        for m in p["mappings"].as_array().into_iter().flatten() {
            let _ = writeln!(
                t,
                "{:<5} {:<19} {:<19} {:<12} {}",
                p["port"],
                m["va"].as_str().unwrap_or(""),
                m["iova"].as_str().unwrap_or(""),
                m["len"],
                m["kind"].as_str().unwrap_or("")
            );
        }
    }
    Ok(Reply { text: t, data: v })
}

fn show_lcores(_c: &mut Control, dp: &Dataplane, args: &[&str]) -> Result<Reply, String> {
    no_args(args)?;
    let v = crate::telemetry::answer("/lcores", dp);
    Ok(Reply {
        text: json_text(&v),
        data: v,
    })
}

fn help(_c: &mut Control, _dp: &Dataplane, _args: &[&str]) -> Result<Reply, String> {
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

fn quit(c: &mut Control, _dp: &Dataplane, args: &[&str]) -> Result<Reply, String> {
    no_args(args)?;
    c.quit = true;
    Ok(Reply::text("Bye..."))
}

fn capture_start(c: &mut Control, dp: &Dataplane, args: &[&str]) -> Result<Reply, String> {
    use super::capture::{Capture, StreamTap, Tap};
    let usage = || "usage: PORT[:QUEUE] rx|tx|both --count N -w FILE".to_string();
    let [target, dir, rest @ ..] = args else {
        return Err(usage());
    };
    let (mut count, mut file) = (None, None);
    let mut it = rest.iter();
    while let Some(a) = it.next() {
        match *a {
            "--count" | "-c" => count = it.next().and_then(|n| n.parse::<u64>().ok()),
            "-w" => file = it.next().map(std::path::PathBuf::from),
            _ => return Err(usage()),
        }
    }
    let count = count
        .filter(|n| (1..=10_000_000).contains(n))
        .ok_or("--count N (1..=10000000) expected")?;
    let file = file.ok_or("-w FILE.pcapng expected")?;
    let (port, queue) = match target.split_once(':') {
        Some((p, q)) => (
            p,
            Some(
                q.parse::<u16>()
                    .map_err(|_| format!("`{q}` is not a queue number"))?,
            ),
        ),
        None => (*target, None),
    };
    let port = ports(dp, &[port])?[0];
    let (rx, tx) = match *dir {
        "rx" => (true, false),
        "tx" => (false, true),
        "both" => (true, true),
        _ => return Err(format!("`{dir}`: rx, tx or both expected")),
    };
    if c.capture.is_some() {
        return Err("a capture is running: `capture stop` first".into());
    }
    let m = |q: Option<crate::plan::QueueRef>| {
        q.filter(|q| q.port == port && queue.is_none_or(|n| n == q.queue))
    };
    let matched = dp
        .streams()
        .iter()
        .any(|s| (rx && m(s.rx).is_some()) || (tx && m(s.tx).is_some()));
    if !matched {
        return Err(format!(
            "no stream {} port {target}",
            if rx && tx {
                "uses"
            } else if rx {
                "receives from"
            } else {
                "sends to"
            }
        ));
    }
    let tap = Tap::new(count);
    let names: Vec<(u16, String)> = dp
        .ports()
        .iter()
        .map(|p| (p.id, p.info.devargs.clone()))
        .collect();
    let what = args.join(" ");
    let cap = Capture::create(&file, &names, tap.clone(), what)
        .map_err(|e| format!("{}: {e}", file.display()))?;
    let per_lcore: Vec<Vec<Option<StreamTap>>> = dp
        .lcores()
        .iter()
        .map(|l| {
            dp.streams()
                .iter()
                .filter(|s| s.cpu == l.cpu)
                .map(|s| {
                    let (r, t) = (m(s.rx).filter(|_| rx), m(s.tx).filter(|_| tx));
                    (r.is_some() || t.is_some()).then(|| StreamTap {
                        tap: tap.clone(),
                        rx: r,
                        tx: t,
                    })
                })
                .collect()
        })
        .collect();
    let mut per_lcore = per_lcore.into_iter();
    c.broadcast(dp, |_| {
        super::lcore::LcoreCmd::Tap(per_lcore.next().unwrap_or_default())
    })?;
    let status = super::capture_status(&cap, false, None);
    c.capture = Some(cap);
    Ok(Reply {
        text: format!(
            "Capturing {count} frames of port {target} {dir} into {}",
            file.display()
        ),
        data: status,
    })
}

fn capture_stop(c: &mut Control, _dp: &Dataplane, args: &[&str]) -> Result<Reply, String> {
    no_args(args)?;
    let cap = c.capture.as_ref().ok_or("no capture is running")?;
    cap.tap.close();
    Ok(Reply::text("Capture stopping"))
}

fn show_capture(c: &mut Control, _dp: &Dataplane, args: &[&str]) -> Result<Reply, String> {
    no_args(args)?;
    let v = match &c.capture {
        Some(cap) => super::capture_status(cap, false, None),
        None if c.last_capture.is_null() => return Err("no capture yet".into()),
        None => c.last_capture.clone(),
    };
    Ok(Reply {
        text: format!(
            "capture {}: {} taken, {} skipped, {} written to {}{}",
            v["capture"].as_str().unwrap_or(""),
            v["taken"],
            v["skipped"],
            v["written"],
            v["file"].as_str().unwrap_or(""),
            if v["done"] == true {
                " (done)"
            } else {
                " (running)"
            }
        ),
        data: v,
    })
}
