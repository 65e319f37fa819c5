//! The packet generator of `txonly` and `flowgen`: a UDP/IPv4 template per
//! stream, varied per packet by flow, with a latency timestamp in the payload.

use crate::latency;
use crate::wire::{EtherType, EthernetFrame, Ipv4Packet};
use std::net::Ipv4Addr;

/// Ethernet + IPv4 + UDP headers.
pub const HEADERS: usize = 14 + 20 + 8;
/// Smallest frame the generator builds (headers + timestamp, padded to 60).
pub const MIN_LEN: usize = 60;

/// What the generator sends (testpmd `--txpkts`, `--tx-ip`, `--tx-udp`,
/// `--txonly-multi-flow`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct GenConfig {
    /// Frame length without FCS.
    pub pkt_len: usize,
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
}

impl Default for GenConfig {
    fn default() -> Self {
        GenConfig {
            pkt_len: 64,
            flows: 1,
            src_ip: Ipv4Addr::new(198, 18, 0, 1),
            dst_ip: Ipv4Addr::new(198, 18, 0, 2),
            src_port: 9,
            dst_port: 9,
        }
    }
}

/// A ready frame template and the per-packet variation.
#[derive(Debug, Clone)]
pub struct Generator {
    template: Vec<u8>,
    flows: u32,
    next_flow: u32,
    vary_ip: bool,
    base_ip: u32,
    base_port: u16,
}

impl Generator {
    /// Build the template from `src` (TX port MAC) to `dst` (its peer).
    /// `vary_ip`: flowgen varies the destination IP, txonly the source port.
    pub fn new(cfg: &GenConfig, src: &[u8; 6], dst: &[u8; 6], vary_ip: bool) -> Generator {
        let len = cfg.pkt_len.max(MIN_LEN);
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
        Generator {
            template: t,
            flows: cfg.flows.max(1),
            next_flow: 0,
            vary_ip,
            base_ip: u32::from(cfg.dst_ip),
            base_port: cfg.src_port,
        }
    }

    /// Frame length.
    pub fn len(&self) -> usize {
        self.template.len()
    }

    /// True when the template is empty (never).
    pub fn is_empty(&self) -> bool {
        self.template.is_empty()
    }

    /// Write the next packet into `out` (exactly `len()` bytes) stamped `now_ns`.
    #[inline]
    pub fn fill(&mut self, out: &mut [u8], now_ns: u64) {
        out.copy_from_slice(&self.template);
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
