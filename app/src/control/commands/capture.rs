//! `capture ...`, `capture stop`, `show capture`: the live capture's commands
//! (the copying itself is [`crate::control::capture`]).

use super::{no_args, ports};
use crate::control::{Control, Reply};
use crate::dataplane::Dataplane;

pub(super) fn capture_start(
    c: &mut Control,
    dp: &mut Dataplane,
    args: &[&str],
) -> Result<Reply, String> {
    use crate::control::capture::{Capture, StreamTap, Tap};
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
        crate::control::lcore::LcoreCmd::Tap(per_lcore.next().unwrap_or_default())
    })?;
    let status = crate::control::capture_status(&cap, false, None);
    c.capture = Some(cap);
    Ok(Reply {
        text: format!(
            "Capturing {count} frames of port {target} {dir} into {}",
            file.display()
        ),
        data: status,
    })
}

pub(super) fn capture_stop(
    c: &mut Control,
    _dp: &mut Dataplane,
    args: &[&str],
) -> Result<Reply, String> {
    no_args(args)?;
    let cap = c.capture.as_ref().ok_or("no capture is running")?;
    cap.tap.close();
    Ok(Reply::text("Capture stopping"))
}

pub(super) fn show_capture(
    c: &mut Control,
    _dp: &mut Dataplane,
    args: &[&str],
) -> Result<Reply, String> {
    no_args(args)?;
    let v = match &c.capture {
        Some(cap) => crate::control::capture_status(cap, false, None),
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
