//! `af_xdp` devargs → typed configuration:
//! `af_xdp:iface=NAME[,queues=N][,mode=drv|skb][,zero_copy=0|1][,need_wakeup=0|1]
//! [,busy_poll=USECS][,busy_budget=N][,prefer_busy_poll=0|1][,tx_kick_batch=N]`

use super::bpf::XdpMode;
use super::xsk::{BindMode, BusyPoll};
use crate::devargs::Devargs;
use crate::error::PortError;

/// Devargs of an af_xdp port.
#[derive(Debug, Clone)]
pub(super) struct Args {
    pub iface: String,
    pub queues: u16,
    pub mode: XdpMode,
    pub bind: BindMode,
    pub need_wakeup: bool,
    pub busy_poll: Option<BusyPoll>,
    pub tx_kick_batch: usize,
}

fn bad(d: &Devargs, why: String) -> PortError {
    PortError::Devargs {
        devargs: d.raw.clone(),
        why,
    }
}

impl Args {
    /// The keys checked and the interface named (looked up before the rest
    /// is parsed, so a missing interface is reported first).
    ///
    /// # Errors
    /// Unknown keys, no `iface=`.
    pub fn iface(d: &Devargs) -> Result<String, PortError> {
        d.check_keys(&[
            "iface",
            "queues",
            "queue_count",
            "mode",
            "zero_copy",
            "need_wakeup",
            "busy_poll",
            "busy_budget",
            "prefer_busy_poll",
            "tx_kick_batch",
        ])?;
        Ok(d.get("iface")
            .or(d.name.as_deref())
            .ok_or_else(|| bad(d, "an af_xdp port needs `iface=NAME`".into()))?
            .to_string())
    }

    /// The rest of the devargs, for interface `iface`.
    ///
    /// # Errors
    /// Bad values, naming the key.
    pub fn parse(d: &Devargs, iface: String) -> Result<Args, PortError> {
        let queues = match d.get("queue_count") {
            Some(_) => d.num("queue_count", 1u16, 1..=64)?,
            None => d.num("queues", 1u16, 1..=64)?,
        };
        let mode = match d.get("mode").unwrap_or("drv") {
            "drv" | "native" => XdpMode::Drv,
            "skb" | "generic" => XdpMode::Skb,
            m => return Err(bad(d, format!("`mode={m}`: expected drv or skb"))),
        };
        let bind = match d.get("zero_copy") {
            None => BindMode::Auto,
            Some(_) if d.flag("zero_copy", false)? => BindMode::ZeroCopy,
            Some(_) => BindMode::Copy,
        };
        let busy = d.num("busy_poll", 0u32, 0..=1_000_000)?;
        let busy_poll = if busy > 0 {
            Some(BusyPoll {
                usecs: busy,
                budget: d.num("busy_budget", 64u32, 1..=65535)?,
                prefer: d.flag("prefer_busy_poll", true)?,
            })
        } else {
            None
        };
        Ok(Args {
            iface,
            queues,
            mode,
            bind,
            need_wakeup: d.flag("need_wakeup", true)?,
            busy_poll,
            tx_kick_batch: d.num("tx_kick_batch", 32usize, 1..=4096)?,
        })
    }
}
