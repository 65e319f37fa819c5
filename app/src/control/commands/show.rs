//! `show port ...`, `clear port stats`, `show config fwd`, `show mempool`,
//! `show dma`, `show lcores`: the read-only commands.

use super::{no_args, ports};
use crate::control::{Control, Reply};
use crate::dataplane::Dataplane;
use serde_json::{json, Value};
use std::fmt::Write as _;
use std::time::Instant;
use xfwd_pmd::port::mac_string;

pub(super) fn show_port_stats(
    c: &mut Control,
    dp: &mut Dataplane,
    args: &[&str],
) -> Result<Reply, String> {
    let mut t = String::new();
    let mut data = Vec::new();
    let now = Instant::now();
    for id in ports(dp, args)? {
        let s = c.port_stats(dp, id).expect("port exists");
        let rp = dp.port(id).expect("port exists");
        let (raw, started) = (rp.port.stats(), rp.started());
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
        if !started {
            let _ = writeln!(t, "  Port status: stopped (`port start {id}`)");
        }
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
            "rx_pps": rx_pps, "tx_pps": tx_pps, "rx_bps": rx_bps, "tx_bps": tx_bps,
            "started": started}),
        );
    }
    Ok(Reply {
        text: t,
        data: Value::Array(data),
    })
}

pub(super) fn show_port_xstats(
    _c: &mut Control,
    dp: &mut Dataplane,
    args: &[&str],
) -> Result<Reply, String> {
    let mut t = String::new();
    let mut data = Vec::new();
    for id in ports(dp, args)? {
        let p = dp.port(id).expect("port exists");
        let _ = writeln!(t, "###### NIC extended statistics for port {id:<2}");
        // The driver's, then the forwarding mode's (`fwd_drop_<reason>`).
        let mut obj: serde_json::Map<String, Value> = p
            .port
            .xstats()
            .into_iter()
            .map(|(k, v)| (k, json!(v)))
            .collect();
        crate::telemetry::fwd_xstats(dp, id, &mut obj);
        for (k, v) in &obj {
            let _ = writeln!(t, "{k}: {v}");
        }
        data.push(json!({"port": id, "xstats": obj}));
    }
    Ok(Reply {
        text: t,
        data: Value::Array(data),
    })
}

pub(super) fn show_port_info(
    c: &mut Control,
    dp: &mut Dataplane,
    args: &[&str],
) -> Result<Reply, String> {
    let mut t = String::new();
    let mut data = Vec::new();
    for id in ports(dp, args)? {
        let p = dp.port(id).expect("port exists");
        let l = p.port.link();
        let peer = *c.settings.peers.get(&id).unwrap_or(&p.peer_mac);
        let st = p.port.stats();
        let started = p.started();
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
        let _ = writeln!(t, "Port status: {}", status(started));
        let _ = writeln!(t, "DMA mapping: {}", p.info.mapping);
        let _ = writeln!(
            t,
            "Zero copy: {}",
            if p.info.zero_copy { "yes" } else { "no" }
        );
        let (rxd, txd) = p
            .port
            .core()
            .conf
            .as_ref()
            .map_or((0, 0), |c| (c.rx_desc, c.tx_desc));
        let _ = writeln!(
            t,
            "RX queues: {}  TX queues: {}  RX descriptors: {rxd}  TX descriptors: {txd}",
            st.rxq.len(),
            st.txq.len()
        );
        data.push(
            json!({"port": id, "driver": p.info.driver, "devargs": p.info.devargs,
            "mac": mac_string(&p.info.mac), "peer": mac_string(&peer), "link_up": l.up,
            "speed_mbps": l.speed_mbps, "started": started, "polled": started, "mapping": p.info.mapping.to_string(), "zero_copy": p.info.zero_copy,
            "rx_queues": st.rxq.len(), "tx_queues": st.txq.len(), "rx_desc": rxd, "tx_desc": txd}),
        );
    }
    Ok(Reply {
        text: t,
        data: Value::Array(data),
    })
}

fn status(started: bool) -> &'static str {
    if started {
        "started"
    } else {
        "stopped"
    }
}

pub(super) fn clear_port_stats(
    c: &mut Control,
    dp: &mut Dataplane,
    args: &[&str],
) -> Result<Reply, String> {
    let mut t = String::new();
    for id in ports(dp, args)? {
        let p = dp.port(id).expect("port exists");
        let s = p.port.stats();
        c.last_show.insert(id, (s.clone(), Instant::now()));
        c.port_base.insert(id, s);
        let _ = writeln!(t, "\n  NIC statistics for port {id} cleared");
    }
    Ok(Reply::text(t))
}

pub(super) fn show_config_fwd(
    c: &mut Control,
    dp: &mut Dataplane,
    args: &[&str],
) -> Result<Reply, String> {
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

pub(super) fn json_text(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_default()
}

pub(super) fn show_mempool(
    _c: &mut Control,
    dp: &mut Dataplane,
    args: &[&str],
) -> Result<Reply, String> {
    no_args(args)?;
    let v = crate::telemetry::answer("/mempool", dp);
    Ok(Reply {
        text: json_text(&v),
        data: v,
    })
}

pub(super) fn show_dma(
    _c: &mut Control,
    dp: &mut Dataplane,
    args: &[&str],
) -> Result<Reply, String> {
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

pub(super) fn show_lcores(
    _c: &mut Control,
    dp: &mut Dataplane,
    args: &[&str],
) -> Result<Reply, String> {
    no_args(args)?;
    let v = crate::telemetry::answer("/lcores", dp);
    Ok(Reply {
        text: json_text(&v),
        data: v,
    })
}
