//! `port stop|start all|N`: the driver stops and starts for real
//! ([`crate::control::ports`]).

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
