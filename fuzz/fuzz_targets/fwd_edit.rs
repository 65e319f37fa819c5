//! Every forwarding mode's per-frame edit on arbitrary frames, run in an
//! mbuf of a heap-backed pool as the worker runs it.
//!
//! Invariants: no panic; the edit writes only inside the frame (the
//! buffer's headroom and tailroom keep a guard pattern) and leaves the
//! mbuf's lengths as they were; `mac` sets exactly the two addresses;
//! `macswap` and `5tswap` are involutions and keep valid IPv4 header
//! checksums valid; an `icmpecho` ARP reply answers the request (reply op,
//! addresses turned around, our MAC) and an ICMP/ICMPv6 echo reply has
//! checksums that verify; `l3fwd`'s per-packet work (parse, key, TTL / hop
//! limit decrement with the incremental checksum update, MAC rewrite)
//! leaves a header whose checksum verifies. Checksums and VLAN tags are
//! computed here independently of `wire`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::sync::{Arc, OnceLock};
use xfwd::fwd::edit::{self, Frame};
use xfwd::fwd::l3fwd::pkt::{self, Parsed};
use xfwd::fwd::{FwdMode, Verdict, MODES};
use xfwd_mempool::{ExtMem, MbufPool, PageSize, PoolConfig, PoolPlan, Registry};

const GUARD: u8 = 0xa5;
const PORT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
const PEER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];

fn pool() -> &'static MbufPool {
    static POOL: OnceLock<(MbufPool, Registry)> = OnceLock::new();
    &POOL
        .get_or_init(|| {
            let cfg = PoolConfig {
                name: "fuzz".into(),
                n: 8,
                cache_size: 0,
                ..Default::default()
            };
            let plan = PoolPlan::compute(&cfg, PageSize::Size2M, true).expect("pool plan");
            let mem = Arc::new(ExtMem::heap(plan.bytes, PageSize::Size2M).expect("heap"));
            let reg = Registry::new();
            reg.register_mem(&mem).expect("register");
            (MbufPool::create(&cfg, mem, &reg).expect("pool"), reg)
        })
        .0
}

/// Run `f` on `frame` inside an mbuf; the verdict and the frame after.
fn in_mbuf(frame: &[u8], f: impl FnOnce(&mut [u8]) -> Verdict) -> (Verdict, Vec<u8>) {
    let mut m = pool().alloc().expect("an mbuf");
    let (head, buf_len) = (m.headroom(), m.buf_len());
    m.set_data_range(0, buf_len).expect("whole buffer");
    m.data_mut().fill(GUARD);
    m.set_data_range(head, frame.len()).expect("frame fits");
    m.data_mut().copy_from_slice(frame);
    let v = f(m.data_mut());
    assert_eq!(
        (m.data_len(), m.pkt_len(), m.nb_segs()),
        (frame.len(), frame.len(), 1)
    );
    assert_eq!(m.data_off(), head, "data offset moved");
    let out = m.data().to_vec();
    m.set_data_range(0, buf_len).expect("whole buffer");
    let b = m.data();
    assert!(
        b[..head]
            .iter()
            .chain(&b[head + frame.len()..])
            .all(|&x| x == GUARD),
        "the edit wrote outside the frame"
    );
    (v, out)
}

/// RFC 1071 sum (folded, not inverted) of `parts`, each of even length but the last.
fn sum(parts: &[&[u8]]) -> u16 {
    let mut s: u64 = 0;
    for p in parts {
        for c in p.chunks(2) {
            s += u64::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
        }
    }
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    s as u16
}

fn be16(b: &[u8], at: usize) -> usize {
    usize::from(u16::from_be_bytes([b[at], b[at + 1]]))
}

/// Offset of the L3 header after every whole 802.1Q/802.1ad tag, and the EtherType.
fn l2(f: &[u8]) -> (usize, usize) {
    let mut at = 12;
    while matches!(be16(f, at), 0x8100 | 0x88a8) && at + 6 <= f.len() {
        at += 4;
    }
    (at + 2, be16(f, at))
}

fn ipv4_header_ok(f: &[u8]) -> Option<bool> {
    if f.len() < 14 {
        return None;
    }
    let (l3, et) = l2(f);
    if et != 0x0800 || f.len() < l3 + 20 || f[l3] >> 4 != 4 {
        return None;
    }
    let hl = usize::from(f[l3] & 0x0f) * 4;
    (hl >= 20 && f.len() >= l3 + hl).then(|| sum(&[&f[l3..l3 + hl]]) == 0xffff)
}

fn check_icmpecho(input: &[u8], out: &[u8]) {
    let (l3, et) = l2(input);
    assert_eq!(&out[6..12], &PORT_MAC, "reply not from our MAC");
    assert_eq!(&out[12..l3], &input[12..l3], "VLAN tags changed");
    match et {
        0x0806 => {
            let (i, o) = (&input[l3..], &out[l3..]);
            assert_eq!(be16(i, 6), 1, "answered an ARP that is no request");
            assert_eq!(be16(o, 6), 2, "ARP reply op");
            assert_eq!(&o[8..14], &PORT_MAC, "ARP sha");
            assert_eq!(&o[14..18], &i[24..28], "ARP spa = asked tpa");
            assert_eq!(&o[18..24], &i[8..14], "ARP tha = requester");
            assert_eq!(&o[24..28], &i[14..18], "ARP tpa = requester's spa");
            assert_eq!(&out[0..6], &i[8..14], "Ethernet dst = requester");
        }
        0x0800 => {
            let (i, o) = (&input[l3..], &out[l3..]);
            let hl = usize::from(o[0] & 0x0f) * 4;
            let total = be16(o, 2);
            assert_eq!(ipv4_header_ok(out), Some(true), "IPv4 header checksum");
            assert_eq!((o[8], o[9]), (64, 1), "TTL 64, ICMP");
            let icmp = &o[hl..total];
            assert_eq!(icmp[0], 0, "echo reply type");
            assert_eq!(sum(&[icmp]), 0xffff, "ICMP checksum");
            assert_eq!(
                (&o[12..16], &o[16..20]),
                (&i[16..20], &i[12..16]),
                "IPv4 addresses swapped"
            );
            assert_eq!(&out[0..6], &input[6..12], "Ethernet dst = sender");
        }
        0x86dd => {
            let (i, o) = (&input[l3..], &out[l3..]);
            let plen = be16(o, 4);
            assert_eq!((o[6], o[7]), (58, 64), "ICMPv6, hop limit 64");
            let icmp = &o[40..40 + plen];
            assert_eq!(icmp[0], 129, "echo reply type");
            let len = (plen as u32).to_be_bytes();
            let pseudo = [&o[8..24], &o[24..40], &len[..], &[0, 0, 0, 58][..], icmp];
            assert_eq!(sum(&pseudo), 0xffff, "ICMPv6 checksum");
            assert_eq!(
                (&o[8..24], &o[24..40]),
                (&i[24..40], &i[8..24]),
                "IPv6 addresses swapped"
            );
            assert_eq!(&out[0..6], &input[6..12], "Ethernet dst = sender");
        }
        t => panic!("icmpecho forwarded ethertype {t:#06x}"),
    }
}

/// l3fwd's per-packet edit after a lookup found a next hop.
fn l3fwd(f: &mut [u8]) -> Verdict {
    match pkt::parse(f, true) {
        Parsed::V4 { off, .. } => {
            let off = usize::from(off);
            let _ = (pkt::key4(f, off), pkt::dst4(f, off));
            pkt::ttl_dec4(f, off);
        }
        Parsed::V6 { off, .. } => {
            let off = usize::from(off);
            let _ = (pkt::key6(f, off), pkt::dst6(f, off));
            pkt::hop_dec6(f, off);
        }
        Parsed::Drop(_) => return Verdict::Ignore,
    }
    pkt::set_macs(f, &PEER_MAC, &PORT_MAC);
    Verdict::Forward
}

fuzz_target!(|data: &[u8]| {
    let frame = &data[..data.len().min(2048)];
    for &(name, mode) in MODES {
        match mode {
            // No per-frame edit: the frame goes out as it came.
            FwdMode::Io | FwdMode::RxOnly | FwdMode::TxOnly | FwdMode::FlowGen => {}
            FwdMode::Mac => {
                let (v, out) = in_mbuf(frame, |f| edit::mac(f, &PORT_MAC, &PEER_MAC));
                assert_eq!(v == Verdict::Forward, frame.len() >= 14, "{name}");
                if v == Verdict::Forward {
                    assert_eq!((&out[0..6], &out[6..12]), (&PEER_MAC[..], &PORT_MAC[..]));
                    assert_eq!(&out[12..], &frame[12..], "{name} changed the payload");
                }
            }
            FwdMode::MacSwap | FwdMode::FiveTupleSwap => {
                let e = |f: &mut [u8]| {
                    if mode == FwdMode::MacSwap {
                        edit::macswap(f)
                    } else {
                        let len = f.len();
                        edit::five_tuple_swap(f, len)
                    }
                };
                let (v, once) = in_mbuf(frame, e);
                if !matches!(v, Verdict::Forward | Verdict::Partial) {
                    continue;
                }
                assert_eq!(&once[0..6], &frame[6..12], "{name}: MACs not swapped");
                let (v2, twice) = in_mbuf(&once, e);
                assert_eq!(v2, v, "{name}: the swapped frame gets another verdict");
                assert_eq!(twice, frame, "{name} twice is not the identity");
                if ipv4_header_ok(frame) == Some(true) {
                    assert_eq!(
                        ipv4_header_ok(&once),
                        Some(true),
                        "{name} broke the IPv4 checksum"
                    );
                }
            }
            FwdMode::IcmpEcho => {
                let (v, out) = in_mbuf(frame, |f| edit::icmpecho(&mut Frame::single(f), &PORT_MAC));
                if v == Verdict::Forward {
                    check_icmpecho(frame, &out);
                }
            }
            FwdMode::L3fwd => {
                let (v, out) = in_mbuf(frame, l3fwd);
                if v != Verdict::Forward {
                    continue;
                }
                let (l3, et) = l2(frame);
                // What may change: the MACs, the TTL / hop limit (one less)
                // and the IPv4 header checksum.
                let mut want = frame.to_vec();
                want[0..6].copy_from_slice(&PEER_MAC);
                want[6..12].copy_from_slice(&PORT_MAC);
                if et == 0x0800 {
                    want[l3 + 8] -= 1;
                    want[l3 + 10..l3 + 12].copy_from_slice(&out[l3 + 10..l3 + 12]);
                    assert_eq!(
                        ipv4_header_ok(&out),
                        Some(true),
                        "{name}: IPv4 checksum after TTL-1"
                    );
                } else {
                    want[l3 + 7] -= 1;
                }
                assert_eq!(out, want, "{name}");
            }
            // A mode added since: give it an arm with its invariants.
            #[allow(unreachable_patterns)]
            _ => {}
        }
    }
});
