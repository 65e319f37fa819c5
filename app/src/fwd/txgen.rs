//! The packet generator of `txonly` and `flowgen`: a UDP/IPv4 template per
//! stream, varied per packet by flow, with a latency timestamp in the payload.

use super::mix::{self, Share};
use crate::latency;
use crate::wire::{EtherType, EthernetFrame, Ipv4Packet};
use std::net::Ipv4Addr;

/// Ethernet + IPv4 + UDP headers.
pub const HEADERS: usize = 14 + 20 + 8;
/// Smallest frame the generator builds (headers + timestamp, padded to 60).
pub const MIN_LEN: usize = 60;

/// What the generator sends (testpmd `--txpkts`, `--tx-ip`, `--tx-udp`,
/// `--txonly-multi-flow`).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct GenConfig {
    /// Frame length without FCS.
    pub pkt_len: usize,
    /// Frame-size mix (`--tx-mix`); empty: every frame is `pkt_len`.
    pub mix: Vec<Share>,
    /// Number of flows (1 = one 5-tuple).
    pub flows: u32,
    /// Source IPv4.
    pub src_ip: Ipv4Addr,
    /// Destination IPv4 (flowgen adds the flow number).
    pub dst_ip: Ipv4Addr,
    /// UDP source port (txonly adds the flow number).
    pub src_port: u16,
    /// UDP destination port.
    pub dst_port: u16,
    /// Packets per second per generating stream (`None` = as fast as possible).
    pub rate_pps: Option<f64>,
    /// Packets per generating stream before it stops (0 = no limit).
    pub count: u64,
}

/// Parse a link speed: `1G`, `10G`, `25G`, `40G`, `100G`, `100M` → bits/s.
pub fn parse_speed(s: &str) -> Option<f64> {
    let t = s.trim().to_ascii_uppercase();
    let t = t
        .strip_suffix("BPS")
        .or(t.strip_suffix("B"))
        .unwrap_or(&t)
        .to_string();
    let (num, mul) = match t.chars().last()? {
        'G' => (&t[..t.len() - 1], 1e9),
        'M' => (&t[..t.len() - 1], 1e6),
        'K' => (&t[..t.len() - 1], 1e3),
        _ => (&t[..], 1.0),
    };
    let v: f64 = num.parse().ok()?;
    (v > 0.0 && v.is_finite()).then_some(v * mul)
}

/// Parse a rate: `250000`, `1.5M`, `200k` packets/s, or `P%` of `link_bps`
/// for frames of `pkt_len` bytes (+4 FCS +20 preamble and inter-frame gap;
/// for a mix, its mean length: each frame then takes its own size's share).
pub fn parse_rate(s: &str, link_bps: f64, pkt_len: f64) -> Option<f64> {
    let t = s.trim();
    let pps = if let Some(p) = t.strip_suffix('%') {
        let pct: f64 = p.trim().parse().ok()?;
        if !(pct > 0.0 && pct <= 100.0) {
            return None;
        }
        pct / 100.0 * link_bps / ((pkt_len + 4.0 + 20.0) * 8.0)
    } else {
        let u = t.to_ascii_uppercase();
        let (num, mul) = match u.chars().last()? {
            'M' => (&u[..u.len() - 1], 1e6),
            'K' => (&u[..u.len() - 1], 1e3),
            _ => (&u[..], 1.0),
        };
        num.trim().parse::<f64>().ok()? * mul
    };
    (pps >= 1.0 && pps.is_finite()).then_some(pps)
}

impl GenConfig {
    /// The sizes generated: the mix, or `pkt_len` alone.
    pub fn shares(&self) -> Vec<Share> {
        if self.mix.is_empty() {
            vec![Share {
                len: self.pkt_len,
                weight: 1,
            }]
        } else {
            self.mix.clone()
        }
    }
}

impl Default for GenConfig {
    fn default() -> Self {
        GenConfig {
            pkt_len: 64,
            mix: Vec::new(),
            flows: 1,
            src_ip: Ipv4Addr::new(198, 18, 0, 1),
            dst_ip: Ipv4Addr::new(198, 18, 0, 2),
            src_port: 9,
            dst_port: 9,
            rate_pps: None,
            count: 0,
        }
    }
}

/// Ready frame templates (one per size of the mix) and the per-packet
/// variation.
#[derive(Debug, Clone)]
pub struct Generator {
    variants: Vec<Vec<u8>>,
    schedule: Vec<u16>,
    pos: usize,
    cur: usize,
    flows: u32,
    next_flow: u32,
    vary_ip: bool,
    base_ip: u32,
    base_port: u16,
    rate_pps: Option<f64>,
    count: u64,
    made: u64,
    t0: Option<u64>,
}

/// A UDP/IPv4 frame of `len` bytes from `src` to `dst`, stamped 0.
fn template(cfg: &GenConfig, len: usize, src: &[u8; 6], dst: &[u8; 6]) -> Vec<u8> {
    let len = len.max(MIN_LEN);
    let mut t = vec![0u8; len];
    {
        let mut eth = EthernetFrame::new_checked(&mut t[..]).expect("len >= 60");
        eth.set_dst(dst);
        eth.set_src(src);
        eth.set_ethertype(EtherType::Ipv4);
    }
    let ip_len = (len - 14) as u16;
    let ip = &mut t[14..34];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&ip_len.to_be_bytes());
    ip[8] = 64;
    ip[9] = 17;
    ip[12..16].copy_from_slice(&cfg.src_ip.octets());
    ip[16..20].copy_from_slice(&cfg.dst_ip.octets());
    let udp = &mut t[34..42];
    udp[0..2].copy_from_slice(&cfg.src_port.to_be_bytes());
    udp[2..4].copy_from_slice(&cfg.dst_port.to_be_bytes());
    udp[4..6].copy_from_slice(&(ip_len - 20).to_be_bytes());
    // UDP checksum 0: "not computed", valid for IPv4 (RFC 768), as testpmd.
    Ipv4Packet::new_checked(&mut t[14..])
        .expect("built above")
        .fill_checksum();
    latency::stamp(&mut t, 0);
    t
}

impl Generator {
    /// Build the templates from `src` (TX port MAC) to `dst` (its peer).
    /// `vary_ip`: flowgen varies the destination IP, txonly the source port.
    pub fn new(cfg: &GenConfig, src: &[u8; 6], dst: &[u8; 6], vary_ip: bool) -> Generator {
        let shares = cfg.shares();
        Generator {
            variants: shares
                .iter()
                .map(|s| template(cfg, s.len, src, dst))
                .collect(),
            schedule: mix::schedule(&shares),
            pos: 0,
            cur: 0,
            flows: cfg.flows.max(1),
            next_flow: 0,
            vary_ip,
            base_ip: u32::from(cfg.dst_ip),
            base_port: cfg.src_port,
            rate_pps: cfg.rate_pps,
            count: cfg.count,
            made: 0,
            t0: None,
        }
    }

    /// How many packets may be generated now, at most `burst`: the target
    /// rate since the first call (a token bucket without burst credit beyond
    /// one burst) and the packet count limit. Call with the burst's clock.
    #[inline]
    pub fn allowance(&mut self, now_ns: u64, burst: usize) -> usize {
        let mut n = burst as u64;
        if self.count > 0 {
            n = n.min(self.count - self.made.min(self.count));
        }
        if let Some(pps) = self.rate_pps {
            let t0 = *self.t0.get_or_insert(now_ns);
            let due = ((now_ns - t0) as f64 * pps / 1e9) as u64 + 1;
            // At most 10 ms of credit (and at least 4 bursts): a generator
            // preempted for a time slice catches up, one stalled longer does
            // not later send a line-rate spike.
            let credit = ((pps / 100.0) as u64).max(4 * burst as u64);
            if due > self.made + credit {
                self.made = due - credit;
            }
            n = n.min(due.saturating_sub(self.made));
        }
        n as usize
    }

    /// Record `n` packets generated.
    #[inline]
    pub fn generated(&mut self, n: usize) {
        self.made += n as u64;
    }

    /// Choose the next frame's size (the mix's schedule, in order) and
    /// return its length: [`Generator::fill`] then writes a frame of it.
    #[inline]
    pub fn next_len(&mut self) -> usize {
        self.cur = usize::from(self.schedule[self.pos]);
        self.pos = if self.pos + 1 == self.schedule.len() {
            0
        } else {
            self.pos + 1
        };
        self.variants[self.cur].len()
    }

    /// True when the packet count limit is reached.
    pub fn done(&self) -> bool {
        self.count > 0 && self.made >= self.count
    }

    /// Write the next packet into `out` (exactly the length the last
    /// [`Generator::next_len`] returned) stamped `now_ns`.
    #[inline]
    pub fn fill(&mut self, out: &mut [u8], now_ns: u64) {
        out.copy_from_slice(&self.variants[self.cur]);
        let flow = self.next_flow;
        self.next_flow = if flow + 1 >= self.flows { 0 } else { flow + 1 };
        if flow != 0 {
            if self.vary_ip {
                let ip = self.base_ip.wrapping_add(flow).to_be_bytes();
                out[30..34].copy_from_slice(&ip);
                // Header checksum update (RFC 1624) would do; 20 bytes is as cheap.
                if let Ok(mut p) = Ipv4Packet::new_checked(&mut out[14..]) {
                    p.fill_checksum();
                }
            } else {
                let port = self.base_port.wrapping_add(flow as u16);
                out[34..36].copy_from_slice(&port.to_be_bytes());
            }
        }
        latency::stamp(out, now_ns);
    }
}

#[cfg(test)]
mod rate_tests {
    use super::*;

    fn gen(rate: Option<f64>, count: u64) -> Generator {
        let cfg = GenConfig {
            rate_pps: rate,
            count,
            ..Default::default()
        };
        Generator::new(&cfg, &[2, 0, 0, 0, 0, 1], &[2, 0, 0, 0, 0, 2], false)
    }

    #[test]
    fn rates_and_speeds_parse() {
        assert_eq!(parse_speed("10G"), Some(10e9));
        assert_eq!(parse_speed("100g"), Some(100e9));
        assert_eq!(parse_speed("25Gbps"), Some(25e9));
        assert_eq!(parse_speed("fast"), None);
        assert_eq!(parse_rate("250000", 10e9, 64.0), Some(250000.0));
        assert_eq!(parse_rate("1.5M", 10e9, 64.0), Some(1.5e6));
        assert_eq!(parse_rate("200k", 10e9, 64.0), Some(200e3));
        // 64 B + 4 FCS + 20 preamble/IFG = 88 B = 704 bits: 10G line rate is 14.2 Mpps.
        let full = parse_rate("100%", 10e9, 60.0).unwrap();
        assert!((full - 10e9 / 672.0).abs() < 1.0, "{full}");
        assert_eq!(parse_rate("0%", 10e9, 64.0), None);
        assert_eq!(parse_rate("101%", 10e9, 64.0), None);
        assert_eq!(parse_rate("0", 10e9, 64.0), None);
        assert_eq!(parse_rate("x", 10e9, 64.0), None);
    }

    #[test]
    fn allowance_follows_the_rate_and_the_count() {
        let mut g = gen(Some(1e6), 0); // 1 packet per µs
        let mut t = 1_000_000_000u64;
        let mut sent = 0u64;
        for _ in 0..10_000 {
            let n = g.allowance(t, 32);
            g.generated(n);
            sent += n as u64;
            t += 1_000; // 1 µs per loop
        }
        // 10 ms at 1 Mpps: 10 000 packets (± the first one).
        assert!((9_999..=10_001).contains(&sent), "{sent}");
        // A long stall earns at most 10 ms of credit, not a spike of everything owed.
        t += 1_000_000_000;
        let mut burst_total = 0;
        loop {
            let n = g.allowance(t, 32);
            if n == 0 {
                break;
            }
            g.generated(n);
            burst_total += n;
        }
        assert!(burst_total <= 10_001 + 32, "{burst_total}");
        // The count limit stops generation exactly.
        let mut g = gen(None, 100);
        let mut total = 0;
        for _ in 0..10 {
            let n = g.allowance(0, 32);
            g.generated(n);
            total += n;
        }
        assert_eq!(total, 100);
        assert!(g.done());
    }
}
