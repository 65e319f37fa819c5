//! The 82576's control plane over [`Regs`]: reset, link, MAC and filters,
//! RSS, queue registers, statistics. No DMA memory is touched here; the
//! rings live in [`super::ring`].

use super::regs::{self, q, Regs};
use super::rss::{RssConf, RETA_SIZE};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Unicast/multicast filter settings from devargs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filters {
    /// Accept every unicast and multicast address (`promisc=1`).
    pub promisc: bool,
    /// Accept every multicast address (`allmulti=1`).
    pub allmulti: bool,
    /// Extra unicast addresses (`uc=MAC;MAC`, receive-address entries 1..16).
    pub unicast: Vec<[u8; 6]>,
    /// Multicast addresses (`mc=MAC;MAC`, hashed into the multicast table).
    pub multicast: Vec<[u8; 6]>,
}

/// Most extra unicast addresses (receive-address entries 1..16).
pub const MAX_UNICAST: usize = 15;

/// The multicast table bit of `mac` with RCTL.MO = 0 (bits 47:36 of the address).
pub fn mta_bit(mac: &[u8; 6]) -> u16 {
    ((u16::from(mac[4]) >> 4) | (u16::from(mac[5]) << 4)) & 0xfff
}

/// Link state as STATUS reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkState {
    /// STATUS.LU.
    pub up: bool,
    /// Mb/s (10, 100, 1000).
    pub speed_mbps: u32,
}

/// The control plane of one 82576 function.
#[derive(Debug, Clone)]
pub struct Hw {
    regs: Arc<dyn Regs>,
}

/// How long a reset may take before the driver gives up.
const RESET_TIMEOUT: Duration = Duration::from_millis(500);

impl Hw {
    /// Over a register window (BAR0, or a double).
    pub fn new(regs: Arc<dyn Regs>) -> Hw {
        Hw { regs }
    }

    /// The register accessor (queues keep one for their tail registers).
    pub fn regs(&self) -> Arc<dyn Regs> {
        self.regs.clone()
    }

    /// Mask every interrupt (the driver polls).
    pub fn mask_interrupts(&self) {
        self.regs.wr(regs::IMC, u32::MAX);
        self.regs.wr(regs::EIMC, u32::MAX);
    }

    /// Disable RX and TX, reset the MAC (it stops all DMA), mask interrupts,
    /// then bring the link up: clear link reset, set SLU, restart PHY
    /// autonegotiation through MDIC.
    ///
    /// # Errors
    /// The reset bit did not clear, or the PHY write failed.
    pub fn reset(&self) -> Result<(), String> {
        let r = &self.regs;
        self.mask_interrupts();
        r.wr(regs::RCTL, 0);
        r.wr(regs::TCTL, regs::TCTL_PSP);
        r.wr(regs::CTRL, r.rd(regs::CTRL) | regs::CTRL_RST);
        let t0 = Instant::now();
        std::thread::sleep(Duration::from_millis(1));
        while r.rd(regs::CTRL) & regs::CTRL_RST != 0 {
            if t0.elapsed() > RESET_TIMEOUT {
                return Err(format!(
                    "CTRL.RST still set {RESET_TIMEOUT:?} after the reset (CTRL {:#x})",
                    r.rd(regs::CTRL)
                ));
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        self.mask_interrupts();
        r.wr(
            regs::CTRL_EXT,
            r.rd(regs::CTRL_EXT) | regs::CTRL_EXT_DRV_LOAD,
        );
        let ctrl = r.rd(regs::CTRL);
        r.wr(
            regs::CTRL,
            (ctrl | regs::CTRL_SLU) & !(regs::CTRL_LRST | regs::CTRL_PHY_RST),
        );
        self.phy_write(regs::PHY_BMCR, regs::BMCR_AUTONEG_RESTART)
    }

    /// Write a PHY register through MDIC and wait for READY.
    fn phy_write(&self, reg: u32, v: u32) -> Result<(), String> {
        let r = &self.regs;
        r.wr(
            regs::MDIC,
            (v & 0xffff)
                | (reg << regs::MDIC_REG_SHIFT)
                | (regs::PHY_ADDR << regs::MDIC_PHY_SHIFT)
                | regs::MDIC_OP_WRITE,
        );
        let t0 = Instant::now();
        loop {
            let m = r.rd(regs::MDIC);
            if m & regs::MDIC_ERROR != 0 {
                return Err(format!("PHY register {reg} write failed (MDIC {m:#x})"));
            }
            if m & regs::MDIC_READY != 0 {
                return Ok(());
            }
            if t0.elapsed() > RESET_TIMEOUT {
                return Err(format!(
                    "PHY register {reg} write: MDIC never ready ({m:#x})"
                ));
            }
            std::thread::sleep(Duration::from_micros(50));
        }
    }

    /// STATUS: link and speed.
    pub fn link(&self) -> LinkState {
        let s = self.regs.rd(regs::STATUS);
        LinkState {
            up: s & regs::STATUS_LU != 0,
            speed_mbps: match (s >> regs::STATUS_SPEED_SHIFT) & 3 {
                0 => 10,
                1 => 100,
                _ => 1000,
            },
        }
    }

    /// Wait (bounded) until the link is up; returns the last state.
    pub fn wait_link(&self, timeout: Duration) -> LinkState {
        let t0 = Instant::now();
        loop {
            let l = self.link();
            if l.up || t0.elapsed() > timeout {
                return l;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The MAC address in receive-address entry 0 (loaded from the EEPROM at reset).
    pub fn mac(&self) -> [u8; 6] {
        let lo = self.regs.rd(regs::ral(0)).to_le_bytes();
        let hi = self.regs.rd(regs::rah(0)).to_le_bytes();
        [lo[0], lo[1], lo[2], lo[3], hi[0], hi[1]]
    }

    fn set_ra(&self, n: usize, mac: Option<&[u8; 6]>) {
        match mac {
            Some(m) => {
                self.regs
                    .wr(regs::ral(n), u32::from_le_bytes([m[0], m[1], m[2], m[3]]));
                self.regs.wr(
                    regs::rah(n),
                    u32::from_le_bytes([m[4], m[5], 0, 0]) | regs::RAH_AV,
                );
            }
            None => {
                self.regs.wr(regs::rah(n), 0);
                self.regs.wr(regs::ral(n), 0);
            }
        }
    }

    /// Program the address filters: `mac` in entry 0, the extra unicast
    /// addresses after it, the multicast table; returns the RCTL filter bits
    /// (broadcast always accepted).
    pub fn set_filters(&self, mac: &[u8; 6], f: &Filters) -> u32 {
        self.set_ra(0, Some(mac));
        for n in 1..=MAX_UNICAST {
            self.set_ra(n, f.unicast.get(n - 1));
        }
        let mut mta = [0u32; 128];
        for m in &f.multicast {
            let b = mta_bit(m);
            mta[usize::from(b >> 5)] |= 1 << (b & 31);
        }
        for (i, v) in mta.iter().enumerate() {
            self.regs.wr(regs::MTA + 4 * i, *v);
        }
        let mut rctl = regs::RCTL_BAM;
        if f.promisc {
            rctl |= regs::RCTL_UPE | regs::RCTL_MPE;
        }
        if f.allmulti {
            rctl |= regs::RCTL_MPE;
        }
        rctl
    }

    /// Write `bytes` (a multiple of 4) into the registers from `base` on,
    /// four bytes a register, the first byte in the low bits (RETA, RSSRK).
    fn write_bytes(&self, base: usize, bytes: &[u8]) {
        for (i, w) in bytes.chunks_exact(4).enumerate() {
            self.regs
                .wr(base + 4 * i, u32::from_le_bytes([w[0], w[1], w[2], w[3]]));
        }
    }

    /// Program RSS for `queues` RX queues (one queue, or `rss=none`: off).
    ///
    /// # Errors
    /// A redirection entry names a queue that is not configured.
    pub fn set_rss(&self, rss: &RssConf, queues: u16) -> Result<(), String> {
        let r = &self.regs;
        let table = rss.table(queues)?;
        debug_assert_eq!(table.len(), RETA_SIZE);
        self.write_bytes(regs::RETA, &table);
        self.write_bytes(regs::RSSRK, &rss.key);
        match rss.types.filter(|_| queues > 1) {
            Some(t) => {
                // The hash replaces the checksum in the write-back (PCSD), which RSS needs.
                r.wr(regs::RXCSUM, regs::RXCSUM_PCSD);
                r.wr(regs::MRQC, regs::MRQC_RSS | t.mrqc_fields());
            }
            None => {
                r.wr(regs::RXCSUM, 0);
                r.wr(regs::MRQC, 0);
            }
        }
        Ok(())
    }

    /// Program RX queue `n`: ring at `iova` with `desc` descriptors, buffers
    /// of `buf_kib` KiB, advanced one-buffer descriptors, then enable it.
    pub fn setup_rx_queue(&self, n: usize, iova: u64, desc: u16, buf_kib: u32) {
        let (r, b) = (&self.regs, regs::rxq(n));
        r.wr(b + q::DCTL, 0);
        r.wr(b + q::BAL, iova as u32);
        r.wr(b + q::BAH, (iova >> 32) as u32);
        r.wr(b + q::LEN, u32::from(desc) * 16);
        r.wr(
            b + q::SRRCTL,
            (buf_kib & 0x7f) | regs::SRRCTL_DESCTYPE_ADV_ONEBUF | regs::SRRCTL_DROP_EN,
        );
        r.wr(b + q::HEAD, 0);
        r.wr(b + q::TAIL, 0);
        r.wr(b + q::DCTL, regs::DCTL_ENABLE);
    }

    /// Program TX queue `n` and enable it.
    pub fn setup_tx_queue(&self, n: usize, iova: u64, desc: u16) {
        let (r, b) = (&self.regs, regs::txq(n));
        r.wr(b + q::DCTL, 0);
        r.wr(b + q::BAL, iova as u32);
        r.wr(b + q::BAH, (iova >> 32) as u32);
        r.wr(b + q::LEN, u32::from(desc) * 16);
        r.wr(b + q::HEAD, 0);
        r.wr(b + q::TAIL, 0);
        r.wr(b + q::DCTL, regs::DCTL_ENABLE);
    }

    /// Disable queues `from..16` (both directions).
    pub fn disable_queues_from(&self, rx_from: usize, tx_from: usize) {
        for n in rx_from..16 {
            self.regs.wr(regs::rxq(n) + q::DCTL, 0);
        }
        for n in tx_from..16 {
            self.regs.wr(regs::txq(n) + q::DCTL, 0);
        }
    }

    /// Enable the receiver (with the filter bits of [`Hw::set_filters`]) and
    /// the transmitter; CRC stripped on receive.
    pub fn enable(&self, rctl_filters: u32) {
        self.regs.wr(
            regs::TCTL,
            regs::TCTL_EN | regs::TCTL_PSP | regs::TCTL_CT_COLD,
        );
        self.regs
            .wr(regs::RCTL, regs::RCTL_EN | regs::RCTL_SECRC | rctl_filters);
    }

    /// Stop receiving and transmitting (DMA of queued work may still finish).
    pub fn disable(&self) {
        self.regs.wr(regs::RCTL, 0);
        self.regs.wr(regs::TCTL, regs::TCTL_PSP);
    }

    /// Read (and so clear) every statistics register, adding into `acc`
    /// (in the order of [`regs::STATS32`], then [`regs::STATS64`]), and the
    /// per-queue drop counters of `rxq` queues after them.
    pub fn accumulate_stats(&self, acc: &mut Vec<u64>, rxq: usize) {
        let n = regs::STATS32.len() + regs::STATS64.len() + rxq;
        if acc.len() < n {
            acc.resize(n, 0);
        }
        let mut i = 0;
        for (_, off) in regs::STATS32 {
            acc[i] += u64::from(self.regs.rd(*off));
            i += 1;
        }
        for (_, off) in regs::STATS64 {
            let lo = u64::from(self.regs.rd(*off));
            let hi = u64::from(self.regs.rd(off + 4));
            acc[i] += lo | (hi << 32);
            i += 1;
        }
        for qn in 0..rxq {
            acc[i] += u64::from(self.regs.rd(regs::rxq(qn) + q::RQDPC));
            i += 1;
        }
    }
}

/// A register-model double of the 82576 for unit tests: a register file
/// where CTRL.RST self-clears (and resets the file), MDIC completes at once
/// and a PHY autonegotiation restart brings the link up, statistics
/// registers clear on read.
#[cfg(test)]
pub mod double {
    use super::*;
    use std::collections::HashMap;
    use std::sync::Mutex;

    /// See the module.
    #[derive(Debug, Default)]
    pub struct FakeIgb {
        /// The register file.
        pub regs: Mutex<HashMap<usize, u32>>,
        /// Number of resets seen.
        pub resets: Mutex<u32>,
    }

    impl FakeIgb {
        /// After power-on: MAC 52:54:00:12:34:56 in entry 0, link down.
        pub fn new() -> FakeIgb {
            let f = FakeIgb::default();
            f.power_on();
            f
        }

        fn power_on(&self) {
            let mut r = self.regs.lock().unwrap();
            r.clear();
            r.insert(regs::CTRL, regs::CTRL_LRST);
            r.insert(regs::ral(0), u32::from_le_bytes([0x52, 0x54, 0, 0x12]));
            r.insert(
                regs::rah(0),
                u32::from_le_bytes([0x34, 0x56, 0, 0]) | regs::RAH_AV,
            );
        }

        /// A register's value without side effects.
        pub fn peek(&self, off: usize) -> u32 {
            self.regs.lock().unwrap().get(&off).copied().unwrap_or(0)
        }

        /// Set a register without side effects.
        pub fn poke(&self, off: usize, v: u32) {
            self.regs.lock().unwrap().insert(off, v);
        }
    }

    impl Regs for FakeIgb {
        fn rd(&self, off: usize) -> u32 {
            let mut r = self.regs.lock().unwrap();
            let v = r.get(&off).copied().unwrap_or(0);
            if (0x4000..0x4100).contains(&off)
                || ((0xc000..0xe000).contains(&off) && off % 0x40 == q::RQDPC)
            {
                r.insert(off, 0);
            }
            v
        }

        fn wr(&self, off: usize, v: u32) {
            if off == regs::CTRL && v & regs::CTRL_RST != 0 {
                *self.resets.lock().unwrap() += 1;
                self.power_on();
                return;
            }
            let mut r = self.regs.lock().unwrap();
            if off == regs::MDIC {
                let reg = (v >> regs::MDIC_REG_SHIFT) & 0x1f;
                let phy = (v >> regs::MDIC_PHY_SHIFT) & 0x1f;
                if phy != regs::PHY_ADDR {
                    r.insert(off, v | regs::MDIC_ERROR | regs::MDIC_READY);
                    return;
                }
                if reg == regs::PHY_BMCR && v & 0x0200 != 0 && v & 0x1000 != 0 {
                    r.insert(
                        regs::STATUS,
                        regs::STATUS_LU | (2 << regs::STATUS_SPEED_SHIFT),
                    );
                }
                r.insert(off, v | regs::MDIC_READY);
                return;
            }
            r.insert(off, v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::double::FakeIgb;
    use super::*;
    use crate::vfio::igb::rss::{toeplitz, DEFAULT_KEY};

    fn hw() -> (Arc<FakeIgb>, Hw) {
        let f = Arc::new(FakeIgb::new());
        (f.clone(), Hw::new(f))
    }

    #[test]
    fn reset_brings_the_link_up_and_keeps_the_eeprom_mac() {
        let (f, hw) = hw();
        assert!(!hw.link().up);
        hw.reset().unwrap();
        assert_eq!(*f.resets.lock().unwrap(), 1);
        let ctrl = f.peek(regs::CTRL);
        assert_ne!(ctrl & regs::CTRL_SLU, 0);
        assert_eq!(ctrl & regs::CTRL_LRST, 0);
        assert_eq!(f.peek(regs::IMC), u32::MAX, "interrupts masked");
        let l = hw.wait_link(Duration::from_millis(10));
        assert_eq!(
            l,
            LinkState {
                up: true,
                speed_mbps: 1000
            }
        );
        assert_eq!(hw.mac(), [0x52, 0x54, 0, 0x12, 0x34, 0x56]);
    }

    #[test]
    fn filters_program_addresses_multicast_table_and_promiscuous_bits() {
        let (f, hw) = hw();
        let mac = [2, 0, 0, 0, 0, 1];
        let mc = [0x01, 0x00, 0x5e, 0x00, 0x12, 0x34];
        let filters = Filters {
            unicast: vec![[2, 0, 0, 0, 0, 2]],
            multicast: vec![mc],
            ..Filters::default()
        };
        let rctl = hw.set_filters(&mac, &filters);
        assert_eq!(rctl, regs::RCTL_BAM);
        assert_eq!(f.peek(regs::ral(0)), 0x0000_0002);
        assert_eq!(f.peek(regs::rah(0)), 0x0100 | regs::RAH_AV);
        assert_eq!(f.peek(regs::rah(1)), 0x0200 | regs::RAH_AV);
        assert_eq!(f.peek(regs::rah(2)), 0, "unused entries invalid");
        // 0x34 << 4 | 0x12 >> 4 = 0x341: register 0x1a, bit 1.
        assert_eq!(mta_bit(&mc), 0x341);
        assert_eq!(f.peek(regs::MTA + 4 * 0x1a), 1 << 1);
        let p = hw.set_filters(
            &mac,
            &Filters {
                promisc: true,
                ..Filters::default()
            },
        );
        assert_eq!(
            p & (regs::RCTL_UPE | regs::RCTL_MPE),
            regs::RCTL_UPE | regs::RCTL_MPE
        );
        let a = hw.set_filters(
            &mac,
            &Filters {
                allmulti: true,
                ..Filters::default()
            },
        );
        assert_eq!(a & (regs::RCTL_UPE | regs::RCTL_MPE), regs::RCTL_MPE);
        hw.enable(rctl);
        assert_eq!(
            f.peek(regs::RCTL),
            regs::RCTL_EN | regs::RCTL_SECRC | regs::RCTL_BAM
        );
        assert_ne!(f.peek(regs::TCTL) & regs::TCTL_EN, 0);
    }

    #[test]
    fn rss_writes_key_table_and_hash_types_and_predicts_the_queue() {
        let (f, hw) = hw();
        let rss = RssConf::parse(Some("ip|udp"), None, None).unwrap();
        hw.set_rss(&rss, 4).unwrap();
        assert_eq!(
            f.peek(regs::RSSRK),
            u32::from_le_bytes([0x6d, 0x5a, 0x56, 0xda])
        );
        assert_eq!(f.peek(regs::RETA), u32::from_le_bytes([0, 1, 2, 3]));
        assert_eq!(
            f.peek(regs::RETA + 4 * 31),
            u32::from_le_bytes([0, 1, 2, 3])
        );
        let m = f.peek(regs::MRQC);
        assert_eq!(m & 7, regs::MRQC_RSS);
        assert_ne!(m & regs::mrqc::IPV4_UDP, 0);
        assert_eq!(m & regs::mrqc::IPV4_TCP, 0);
        assert_ne!(f.peek(regs::RXCSUM) & regs::RXCSUM_PCSD, 0);
        // The queue a flow lands on is the table entry at the hash's low 7 bits,
        // read back from the registers as the device would.
        let h = toeplitz(
            &DEFAULT_KEY,
            &super::super::rss::ipv4_input([10, 0, 0, 1], [10, 0, 0, 2], Some((1024, 9))),
        );
        let reta = f
            .peek(regs::RETA + 4 * ((h & 0x7f) as usize / 4))
            .to_le_bytes();
        assert_eq!(reta[(h & 3) as usize], (h & 0x7f) as u8 % 4);
        // One queue: RSS off.
        hw.set_rss(&rss, 1).unwrap();
        assert_eq!(f.peek(regs::MRQC), 0);
        let bad = RssConf::parse(None, None, Some("0:5")).unwrap();
        assert!(hw.set_rss(&bad, 4).unwrap_err().contains("queue 5"));
    }

    #[test]
    fn queues_are_programmed_and_stats_accumulate_across_clearing_reads() {
        let (f, hw) = hw();
        hw.setup_rx_queue(3, 0x1_2345_6000, 512, 2);
        let b = regs::rxq(3);
        assert_eq!(b, 0xc0c0);
        assert_eq!(f.peek(b + q::BAL), 0x2345_6000);
        assert_eq!(f.peek(b + q::BAH), 1);
        assert_eq!(f.peek(b + q::LEN), 512 * 16);
        assert_eq!(
            f.peek(b + q::SRRCTL),
            2 | regs::SRRCTL_DESCTYPE_ADV_ONEBUF | regs::SRRCTL_DROP_EN
        );
        assert_eq!(f.peek(b + q::DCTL), regs::DCTL_ENABLE);
        hw.setup_tx_queue(1, 0x8000, 256);
        assert_eq!(f.peek(regs::txq(1) + q::LEN), 4096);
        hw.disable_queues_from(4, 2);
        assert_eq!(f.peek(b + q::DCTL), regs::DCTL_ENABLE, "queue 3 stays");
        assert_eq!(f.peek(regs::rxq(4) + q::DCTL), 0);
        f.poke(0x4074, 7); // good packets received
        f.poke(0x4088, 0xffff_ffff); // good octets low
        f.poke(0x408c, 1); // good octets high
        f.poke(regs::rxq(1) + q::RQDPC, 3);
        let mut acc = Vec::new();
        hw.accumulate_stats(&mut acc, 2);
        f.poke(0x4074, 5);
        hw.accumulate_stats(&mut acc, 2);
        let gprc = regs::STATS32
            .iter()
            .position(|(n, _)| *n == "hw_rx_good_packets")
            .unwrap();
        assert_eq!(acc[gprc], 12);
        assert_eq!(acc[regs::STATS32.len()], 0x1_ffff_ffff);
        assert_eq!(acc[regs::STATS32.len() + regs::STATS64.len() + 1], 3);
    }
}
