//! `set fwd|burst|txpkts|eth-peer|rate`: settings the lcores take at the
//! next `start` (forwarding stopped only).

use super::number;
use super::{ports, stopped_only};
use crate::control::{Control, Reply};
use crate::dataplane::Dataplane;
use crate::fwd::FwdMode;
use xfwd_pmd::port::{mac_string, parse_mac};

pub(super) fn set_fwd(
    c: &mut Control,
    _dp: &mut Dataplane,
    args: &[&str],
) -> Result<Reply, String> {
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

pub(super) fn set_burst(
    c: &mut Control,
    _dp: &mut Dataplane,
    args: &[&str],
) -> Result<Reply, String> {
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

pub(super) fn set_txpkts(
    c: &mut Control,
    dp: &mut Dataplane,
    args: &[&str],
) -> Result<Reply, String> {
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

pub(super) fn set_eth_peer(
    c: &mut Control,
    dp: &mut Dataplane,
    args: &[&str],
) -> Result<Reply, String> {
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

pub(super) fn set_rate(
    c: &mut Control,
    _dp: &mut Dataplane,
    args: &[&str],
) -> Result<Reply, String> {
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
