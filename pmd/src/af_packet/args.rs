//! `af_packet` devargs → typed configuration (and the ring geometry they imply).

use super::socket::{FanoutMode, TpacketReq3};
use super::MAX_QPAIRS;
use crate::devargs::Devargs;
use crate::error::PortError;

/// The parsed devargs of an `af_packet` port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AfPacketArgs {
    /// Interface name.
    pub iface: String,
    /// Queue pairs offered.
    pub qpairs: u16,
    /// Ring block size.
    pub blocksz: u32,
    /// TX frame slot size.
    pub framesz: u32,
    /// Frames per ring (`None`: the queue's descriptor count).
    pub framecnt: Option<u32>,
    /// `PACKET_QDISC_BYPASS`.
    pub qdisc_bypass: bool,
    /// Fanout mode for more than one RX queue.
    pub fanout: FanoutMode,
    /// Promiscuous while started.
    pub promisc: bool,
    /// RX block retire timeout in ms.
    pub blk_tov: u32,
    /// Kick (`sendto`) once this many frames wait in the TX ring.
    pub tx_kick_batch: usize,
}

impl AfPacketArgs {
    /// Parse and range-check the devargs.
    ///
    /// # Errors
    /// [`PortError::Devargs`] naming the key, the value and what is accepted.
    pub fn parse(d: &Devargs) -> Result<AfPacketArgs, PortError> {
        d.check_keys(&[
            "iface",
            "qpairs",
            "blocksz",
            "framesz",
            "framecnt",
            "qdisc_bypass",
            "fanout",
            "fanout_mode",
            "promisc",
            "blk_tov",
            "tx_kick_batch",
        ])?;
        let bad = |why: String| PortError::Devargs {
            devargs: d.raw.clone(),
            why,
        };
        let iface = match (d.get("iface"), d.name.as_deref()) {
            (Some(_), Some(n)) => {
                return Err(bad(format!(
                    "both `iface=` and the bare name `{n}` given; use one"
                )))
            }
            (Some(i), None) | (None, Some(i)) => i.to_string(),
            (None, None) => {
                return Err(bad(
                    "an af_packet port needs an interface: `af_packet:iface=NAME`".into(),
                ))
            }
        };
        if iface.is_empty() || iface.len() >= libc::IFNAMSIZ || iface.contains(['/', ' ']) {
            return Err(bad(format!(
                "`iface={iface}`: an interface name has 1..15 bytes, no '/' or spaces"
            )));
        }
        let qpairs = d.num("qpairs", 1u16, 1..=MAX_QPAIRS)?;
        let blocksz = d.num("blocksz", 4096u32, 4096..=4 << 20)?;
        if !blocksz.is_power_of_two() {
            return Err(bad(format!(
                "`blocksz={blocksz}`: must be a power of two (4096, 8192, …, 4194304)"
            )));
        }
        let framesz = d.num("framesz", 2048u32, 128..=blocksz)?;
        if framesz % 16 != 0 {
            return Err(bad(format!(
                "`framesz={framesz}`: must be a multiple of 16 (TPACKET_ALIGNMENT)"
            )));
        }
        let framecnt = match d.get("framecnt") {
            None => None,
            Some(_) => Some(d.num("framecnt", 0u32, 1..=1 << 20)?),
        };
        let fanout = match d.get("fanout").or(d.get("fanout_mode")) {
            None | Some("hash") => FanoutMode::Hash,
            Some("lb") => FanoutMode::Lb,
            Some("cpu") => FanoutMode::Cpu,
            Some(v) => return Err(bad(format!("`fanout={v}`: expected hash, lb or cpu"))),
        };
        Ok(AfPacketArgs {
            iface,
            qpairs,
            blocksz,
            framesz,
            framecnt,
            qdisc_bypass: d.flag("qdisc_bypass", true)?,
            fanout,
            promisc: d.flag("promisc", true)?,
            blk_tov: d.num("blk_tov", 1u32, 1..=1000)?,
            tx_kick_batch: d.num("tx_kick_batch", 32usize, 1..=4096)?,
        })
    }

    /// The ring request for `frames` frames (rounded up to whole blocks).
    pub fn ring_req(&self, frames: u32, rx: bool) -> TpacketReq3 {
        let per_block = self.blocksz / self.framesz;
        let block_nr = frames.div_ceil(per_block).max(1);
        TpacketReq3 {
            block_size: self.blocksz,
            block_nr,
            frame_size: self.framesz,
            frame_nr: block_nr * per_block,
            retire_blk_tov: if rx { self.blk_tov } else { 0 },
            sizeof_priv: 0,
            feature_req_word: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<AfPacketArgs, PortError> {
        AfPacketArgs::parse(&Devargs::parse(s).unwrap())
    }

    #[test]
    fn defaults_and_names() {
        let a = parse("af_packet:iface=veth0").unwrap();
        assert_eq!(
            (a.qpairs, a.blocksz, a.framesz, a.framecnt),
            (1, 4096, 2048, None)
        );
        assert!(a.qdisc_bypass && a.promisc);
        assert_eq!(a.fanout, FanoutMode::Hash);
        let b = parse("af_packet:veth0,qpairs=4,fanout_mode=lb,qdisc_bypass=0").unwrap();
        assert_eq!((b.iface.as_str(), b.qpairs), ("veth0", 4));
        assert_eq!(b.fanout, FanoutMode::Lb);
        assert!(!b.qdisc_bypass);
    }

    #[test]
    fn bad_devargs_explain_themselves() {
        for (s, frag) in [
            ("af_packet:", "needs an interface"),
            ("af_packet:qpairs=2", "needs an interface"),
            ("af_packet:iface=a,b", "both"),
            ("af_packet:iface=veth0,qpairs=0", "qpairs=0"),
            ("af_packet:iface=veth0,qpairs=x", "1..=16"),
            ("af_packet:iface=veth0,blocksz=5000", "power of two"),
            ("af_packet:iface=veth0,blocksz=1024", "4096..="),
            ("af_packet:iface=veth0,framesz=100", "128..=4096"),
            ("af_packet:iface=veth0,framesz=1000", "multiple of 16"),
            ("af_packet:iface=veth0,framecnt=0", "framecnt=0"),
            ("af_packet:iface=veth0,fanout=rnd", "hash, lb or cpu"),
            ("af_packet:iface=veth0,qdisc_bypass=2", "qdisc_bypass=2"),
            ("af_packet:iface=veth0,bogus=1", "unknown key `bogus`"),
            ("af_packet:iface=a-very-long-interface", "1..15 bytes"),
        ] {
            let e = parse(s).unwrap_err().to_string();
            assert!(e.contains(frag), "{s}: {e}");
        }
    }

    #[test]
    fn ring_geometry_fills_whole_blocks() {
        let a = parse("af_packet:iface=x,blocksz=8192,framesz=2048").unwrap();
        let r = a.ring_req(10, true);
        assert_eq!((r.block_nr, r.frame_nr, r.retire_blk_tov), (3, 12, 1));
        assert_eq!(r.bytes(), 3 * 8192);
        let t = a.ring_req(1, false);
        assert_eq!((t.block_nr, t.frame_nr, t.retire_blk_tov), (1, 4, 0));
    }
}
