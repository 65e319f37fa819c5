//! `port stop|start all|N`: the driver stops and starts for real
//! ([`crate::control::ports`]); `port config all|N rxd|txd N` changes a
//! stopped port's ring sizes (testpmd's, which also needs the port stopped).

use super::ports;
use crate::control::{Control, Reply};
use crate::dataplane::Dataplane;
use std::fmt::Write as _;

/// Stop or start the ports named; with `all` the ones already in that
/// state are left alone.
fn each(c: &mut Control, dp: &mut Dataplane, args: &[&str], stop: bool) -> Result<Reply, String> {
    let ids = ports(dp, args)?;
    let all = args == ["all"];
    let mut t = String::from(if stop {
        "Stopping ports...\n"
    } else {
        "Starting ports...\n"
    });
    for id in ids {
        let started = dp.port(id).is_some_and(|p| p.started());
        if all && started != stop {
            continue;
        }
        if stop {
            c.stop_port(dp, id)?;
        } else {
            c.start_port(dp, id)?;
        }
        let _ = writeln!(t, "Port {id}: {}", if stop { "stopped" } else { "started" });
    }
    t.push_str("Done");
    Ok(Reply::text(t))
}

pub(super) fn port_stop(
    c: &mut Control,
    dp: &mut Dataplane,
    args: &[&str],
) -> Result<Reply, String> {
    each(c, dp, args, true)
}

pub(super) fn port_start(
    c: &mut Control,
    dp: &mut Dataplane,
    args: &[&str],
) -> Result<Reply, String> {
    each(c, dp, args, false)
}

pub(super) fn port_config(
    _c: &mut Control,
    dp: &mut Dataplane,
    args: &[&str],
) -> Result<Reply, String> {
    let [p, what, n] = args else {
        return Err("usage: a port (or all), rxd or txd, and a count expected".into());
    };
    let n: u16 = n
        .parse()
        .ok()
        .filter(|&n| n > 0)
        .ok_or_else(|| format!("`{n}` is not a descriptor count (1..=65535)"))?;
    let rx = match *what {
        "rxd" => true,
        "txd" => false,
        _ => return Err(format!("`{what}`: rxd or txd expected")),
    };
    let mut t = String::new();
    for id in ports(dp, &[p])? {
        dp.reconfigure_port(id, |c| {
            if rx {
                c.rx_desc = n;
            } else {
                c.tx_desc = n;
            }
        })?;
        let _ = writeln!(t, "Port {id}: {what} {n} from the next `port start {id}`");
    }
    Ok(Reply::text(t.trim_end()))
}
