use super::*;
use crate::wire::checksum::{checksum, pseudo_v6, sum};

const A: [u8; 6] = [0x02, 0xaa, 0, 0, 0, 1];
const B: [u8; 6] = [0x02, 0xbb, 0, 0, 0, 2];
const PORT: [u8; 6] = [0x02, 0, 0, 0x50, 0, 9];
const V4A: [u8; 4] = [10, 0, 0, 1];
const V4B: [u8; 4] = [10, 0, 0, 2];

fn eth(tags: &[u16], et: u16, l3: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(&B);
    v.extend_from_slice(&A);
    for (i, t) in tags.iter().enumerate() {
        v.extend_from_slice(&t.to_be_bytes());
        v.extend_from_slice(&(100 + i as u16).to_be_bytes());
    }
    v.extend_from_slice(&et.to_be_bytes());
    v.extend_from_slice(l3);
    v
}

fn ipv4(src: [u8; 4], dst: [u8; 4], proto: u8, opts: &[u8], payload: &[u8]) -> Vec<u8> {
    let hlen = 20 + opts.len();
    let mut h = vec![0u8; hlen];
    h[0] = 0x40 | (hlen / 4) as u8;
    h[2..4].copy_from_slice(&((hlen + payload.len()) as u16).to_be_bytes());
    h[8] = 33;
    h[9] = proto;
    h[12..16].copy_from_slice(&src);
    h[16..20].copy_from_slice(&dst);
    h[20..].copy_from_slice(opts);
    let c = checksum(&h);
    h[10..12].copy_from_slice(&c.to_be_bytes());
    h.extend_from_slice(payload);
    h
}

fn icmp(ty: u8, id: u16, seq: u16, data: &[u8], pseudo: u32) -> Vec<u8> {
    let mut m = vec![ty, 0, 0, 0];
    m.extend_from_slice(&id.to_be_bytes());
    m.extend_from_slice(&seq.to_be_bytes());
    m.extend_from_slice(data);
    let c = checksum::finish(sum(pseudo, &m));
    m[2..4].copy_from_slice(&c.to_be_bytes());
    m
}

fn udp(sp: u16, dp: u16, data: &[u8]) -> Vec<u8> {
    let mut u = Vec::new();
    u.extend_from_slice(&sp.to_be_bytes());
    u.extend_from_slice(&dp.to_be_bytes());
    u.extend_from_slice(&((8 + data.len()) as u16).to_be_bytes());
    u.extend_from_slice(&[0, 0]);
    u.extend_from_slice(data);
    u
}

fn ping4(src: [u8; 4], dst: [u8; 4], tags: &[u16]) -> Vec<u8> {
    let m = icmp(8, 0x1234, 7, b"ping payload 0123456789", 0);
    eth(tags, 0x0800, &ipv4(src, dst, 1, &[], &m))
}

fn v6(last_src: u8, dst0: u8, next: u8, payload: &[u8]) -> Vec<u8> {
    let mut h = vec![0u8; 40];
    h[0] = 0x60;
    h[4..6].copy_from_slice(&(payload.len() as u16).to_be_bytes());
    h[6] = next;
    h[7] = 9;
    h[8] = 0x20;
    h[23] = last_src;
    h[24] = dst0;
    h[39] = 2;
    h.extend_from_slice(payload);
    h
}

fn ping6(last_src: u8, dst0: u8) -> Vec<u8> {
    let probe = v6(last_src, dst0, 58, &[0; 8]);
    let (s, d): ([u8; 16], [u8; 16]) = (
        probe[8..24].try_into().unwrap(),
        probe[24..40].try_into().unwrap(),
    );
    let data = b"ping6 data";
    let pseudo = pseudo_v6(&s, &d, 58, (8 + data.len()) as u32);
    let m = icmp(128, 1, 2, data, pseudo);
    eth(&[], 0x86dd, &v6(last_src, dst0, 58, &m))
}

fn echo(f: &mut [u8]) -> Verdict {
    icmpecho(&mut Frame::single(f), &PORT)
}

/// The reply's ICMPv4 message at `l4` verifies, and so does the IP header.
fn assert_v4_reply(f: &[u8], l3: usize) {
    let hl = usize::from(f[l3] & 15) * 4;
    let total = usize::from(u16::from_be_bytes([f[l3 + 2], f[l3 + 3]]));
    assert_eq!(checksum(&f[l3..l3 + hl]), 0, "ip checksum");
    assert_eq!(checksum(&f[l3 + hl..l3 + total]), 0, "icmp checksum");
    assert_eq!(f[l3 + hl], 0, "echo reply");
    assert_eq!(f[l3 + 8], REPLY_TTL);
    assert_eq!(&f[l3 + 12..l3 + 16], &V4B);
    assert_eq!(&f[l3 + 16..l3 + 20], &V4A);
    assert_eq!((&f[0..6], &f[6..12]), (&A[..], &PORT[..]));
}

#[test]
fn runts_are_dropped_by_every_editing_mode() {
    for len in 0..14 {
        let mut f = vec![0x11u8; len];
        let want = Verdict::Drop(Reason::Runt);
        assert_eq!(macswap(&mut f), want);
        assert_eq!(mac(&mut f, &A, &B), want);
        assert_eq!(five_tuple_swap(&mut f, len), want);
        assert_eq!(echo(&mut f), want);
    }
}

#[test]
fn five_tuple_swap_walks_vlan_and_qinq_tags() {
    let l4 = udp(1111, 2222, b"data");
    for tags in [
        &[][..],
        &[TPID_8021Q],
        &[TPID_8021AD, TPID_8021Q],
        &[0x8100, 0x8100, 0x8100],
    ] {
        let mut f = eth(tags, 0x0800, &ipv4(V4A, V4B, 17, &[], &l4));
        let orig = f.clone();
        let len = f.len();
        assert_eq!(five_tuple_swap(&mut f, len), Verdict::Forward);
        let l3 = 14 + 4 * tags.len();
        assert_eq!(&f[0..6], &A);
        assert_eq!(&f[12..l3], &orig[12..l3], "tags untouched");
        assert_eq!(&f[l3 + 12..l3 + 16], &V4B);
        assert_eq!(&f[l3 + 16..l3 + 20], &V4A);
        assert_eq!(&f[l3 + 20..l3 + 24], &[0x08, 0xae, 0x04, 0x57]);
        assert_eq!(checksum(&f[l3..l3 + 20]), 0);
    }
}

#[test]
fn five_tuple_swap_does_the_layers_it_can_parse() {
    let l4 = udp(1, 2, b"x");
    let good = eth(&[], 0x0800, &ipv4(V4A, V4B, 17, &[], &l4));
    // Bad IHL: MACs swapped, the rest untouched.
    let mut f = good.clone();
    f[14] = 0x44;
    let orig = f.clone();
    assert_eq!(five_tuple_swap(&mut f, orig.len()), Verdict::Partial);
    assert_eq!((&f[0..6], &f[12..]), (&A[..], &orig[12..]));
    // Header cut by the end of the frame (snaplen): same.
    let mut f = good[..30].to_vec();
    assert_eq!(five_tuple_swap(&mut f, 30), Verdict::Partial);
    assert_eq!(&f[12..], &good[12..30]);
    // Header whole, ports cut: addresses swapped, ports not.
    let mut f = good[..36].to_vec();
    assert_eq!(five_tuple_swap(&mut f, 36), Verdict::Partial);
    assert_eq!(&f[26..30], &V4B);
    assert_eq!(&f[34..36], &good[34..36]);
    // Total length that ends before the ports: addresses only.
    let mut f = good.clone();
    f[16..18].copy_from_slice(&22u16.to_be_bytes());
    assert_eq!(five_tuple_swap(&mut f, good.len()), Verdict::Partial);
    assert_eq!(&f[34..38], &good[34..38]);
    // A tag cut short: MACs only.
    let mut f = eth(&[], 0x8100, &[0x00]);
    let orig = f.clone();
    assert_eq!(five_tuple_swap(&mut f, orig.len()), Verdict::Partial);
    assert_eq!(&f[12..], &orig[12..]);
    // A later fragment has no ports: addresses swapped, payload untouched.
    let mut f = good.clone();
    f[20..22].copy_from_slice(&0x0001u16.to_be_bytes());
    assert_eq!(five_tuple_swap(&mut f, good.len()), Verdict::Forward);
    assert_eq!((&f[26..30], &f[34..38]), (&V4B[..], &good[34..38]));
    // Not IP: MACs only, a full success.
    let mut f = eth(&[], 0x88cc, b"lldp");
    assert_eq!(five_tuple_swap(&mut f, 18), Verdict::Forward);
    // IPv6 with UDP: everything.
    let mut f = eth(&[], 0x86dd, &v6(1, 0x20, 17, &udp(5, 6, b"six")));
    let len = f.len();
    assert_eq!(five_tuple_swap(&mut f, len), Verdict::Forward);
    assert_eq!((f[14 + 23], f[14 + 39], f[55], f[57]), (2, 1, 6, 5));
}

#[test]
fn five_tuple_swap_of_a_multi_segment_frame_uses_the_first_segment() {
    let big = vec![7u8; 3000];
    let mut f = eth(
        &[TPID_8021Q],
        0x0800,
        &ipv4(
            V4A,
            V4B,
            6,
            &[],
            &[&udp(80, 443, &[0; 16])[..], &big].concat(),
        ),
    );
    let len = f.len();
    let head = &mut f[..2048];
    assert_eq!(five_tuple_swap(head, len), Verdict::Forward);
    assert_eq!(&f[18 + 20..18 + 24], &[0x01, 0xbb, 0x00, 0x50]);
}

#[test]
fn icmpecho_answers_inside_vlan_and_qinq_tags_and_keeps_them() {
    for tags in [&[][..], &[TPID_8021Q], &[TPID_8021AD, TPID_8021Q]] {
        let mut f = ping4(V4A, V4B, tags);
        let orig = f.clone();
        assert_eq!(echo(&mut f), Verdict::Forward, "{tags:x?}");
        let l3 = 14 + 4 * tags.len();
        assert_eq!(&f[12..l3], &orig[12..l3]);
        assert_v4_reply(&f, l3);
        assert_eq!(&f[l3 + 28..], &orig[l3 + 28..], "payload echoed");
    }
    // ARP inside a tag: reply to the requester's hardware address.
    let mut a = vec![0, 1, 8, 0, 6, 4, 0, 1];
    a.extend_from_slice(&A);
    a.extend_from_slice(&V4A);
    a.extend_from_slice(&[0; 6]);
    a.extend_from_slice(&V4B);
    let mut f = eth(&[TPID_8021Q], 0x0806, &a);
    f[0..6].fill(0xff);
    assert_eq!(echo(&mut f), Verdict::Forward);
    assert_eq!((&f[0..6], &f[6..12]), (&A[..], &PORT[..]));
    assert_eq!(u16::from_be_bytes([f[24], f[25]]), arp::OP_REPLY);
    assert_eq!((&f[26..32], &f[32..36]), (&PORT[..], &V4B[..]));
    assert_eq!((&f[36..42], &f[42..46]), (&A[..], &V4A[..]));
}

#[test]
fn icmpecho_refuses_what_must_not_be_answered() {
    let d = |r| Verdict::Drop(r);
    let cases: Vec<(Vec<u8>, Verdict, &str)> = vec![
        (
            ping4(V4A, [224, 0, 0, 1], &[]),
            d(Reason::DstNotUnicast),
            "multicast dst",
        ),
        (
            ping4(V4A, [239, 1, 2, 3], &[]),
            d(Reason::DstNotUnicast),
            "239/8 dst",
        ),
        (
            ping4(V4A, [255; 4], &[]),
            d(Reason::DstNotUnicast),
            "broadcast dst",
        ),
        (
            ping4([224, 0, 0, 5], V4B, &[]),
            d(Reason::SrcNotUnicast),
            "multicast src",
        ),
        (
            ping4([0; 4], V4B, &[]),
            d(Reason::SrcNotUnicast),
            "0.0.0.0 src",
        ),
        (
            {
                let mut f = ping4(V4A, V4B, &[]);
                f[6] |= 1;
                f
            },
            d(Reason::SrcNotUnicast),
            "group MAC src",
        ),
        (
            {
                let mut f = ping4(V4A, V4B, &[]);
                f[14 + 10] ^= 0x55;
                f
            },
            d(Reason::BadIpChecksum),
            "ip checksum",
        ),
        (
            {
                let mut f = ping4(V4A, V4B, &[]);
                f[40] ^= 1;
                f
            },
            d(Reason::BadIcmpChecksum),
            "icmp checksum",
        ),
        (
            {
                let m = icmp(8, 1, 1, b"frag", 0);
                let mut ip = ipv4(V4A, V4B, 1, &[], &m);
                ip[6] = 0x20; // MF
                let c = {
                    ip[10..12].fill(0);
                    checksum(&ip[..20])
                };
                ip[10..12].copy_from_slice(&c.to_be_bytes());
                eth(&[], 0x0800, &ip)
            },
            d(Reason::Fragment),
            "first fragment",
        ),
        (
            eth(
                &[],
                0x0800,
                &ipv4(V4A, V4B, 1, &[1, 1, 1, 0], &icmp(8, 1, 1, b"o", 0)),
            ),
            d(Reason::IpOptions),
            "options",
        ),
        (
            ping4(V4A, V4B, &[])[..40].to_vec(),
            d(Reason::Truncated),
            "snaplen cut",
        ),
        (
            {
                let mut f = ping4(V4A, V4B, &[]);
                f[14] = 0x35;
                f
            },
            d(Reason::BadIpHeader),
            "version 3",
        ),
        (
            {
                let mut f = ping4(V4A, V4B, &[]);
                f[35] = 1; // code 1
                f
            },
            Verdict::Ignore,
            "code 1",
        ),
        (
            eth(&[], 0x0800, &ipv4(V4A, V4B, 17, &[], &udp(1, 2, b""))),
            Verdict::Ignore,
            "udp",
        ),
        (eth(&[], 0x8100, &[0]), d(Reason::Truncated), "cut tag"),
        (ping6(1, 0xff), d(Reason::DstNotUnicast), "v6 multicast dst"),
        (
            {
                let mut f = ping6(1, 0x20);
                f[14 + 8] = 0xff;
                f
            },
            d(Reason::SrcNotUnicast),
            "v6 multicast src",
        ),
        (
            {
                let mut f = ping6(1, 0x20);
                let n = f.len();
                f[n - 1] ^= 1;
                f
            },
            d(Reason::BadIcmpChecksum),
            "v6 checksum",
        ),
    ];
    for (mut f, want, what) in cases {
        let orig = f.clone();
        assert_eq!(echo(&mut f), want, "{what}");
        if want != Verdict::Forward {
            assert_eq!(f, orig, "{what}: a refused frame is not edited");
        }
    }
}

#[test]
fn icmpecho_checksum_verifies_for_the_all_zero_message() {
    // Type 8, code 0, id 0, seq 0, no data: the reply message is all zero,
    // its checksum must be 0xffff (0x0000 does not verify).
    let m = icmp(8, 0, 0, &[], 0);
    let mut f = eth(&[], 0x0800, &ipv4(V4A, V4B, 1, &[], &m));
    assert_eq!(echo(&mut f), Verdict::Forward);
    assert_eq!(&f[34..38], &[0, 0, 0xff, 0xff]);
    assert_v4_reply(&f, 14);
}

#[test]
fn icmpecho_answers_multi_segment_requests_as_single_ones() {
    let data: Vec<u8> = (0..5001u32).map(|i| (i * 7 + 3) as u8).collect();
    let m = icmp(8, 9, 9, &data, 0);
    let whole = eth(&[TPID_8021Q], 0x0800, &ipv4(V4A, V4B, 1, &[], &m));
    let mut want = whole.clone();
    assert_eq!(echo(&mut want), Verdict::Forward);
    assert_v4_reply(&want, 18);
    for (a, b) in [(2048, 4096), (101, 2001), (64, 65)] {
        let mut f = whole.clone();
        let (head, rest) = f.split_at_mut(a);
        let (s1, s2) = rest.split_at(b - a);
        let segs = [s1, s2];
        let mut fr = Frame {
            head,
            len: whole.len(),
            tail: segs.iter().copied(),
        };
        assert_eq!(icmpecho(&mut fr, &PORT), Verdict::Forward, "split {a}/{b}");
        assert_eq!(f, want, "split {a}/{b}");
    }
    // A corrupted byte in the last segment is seen.
    let mut f = whole.clone();
    let n = f.len();
    f[n - 3] ^= 0x10;
    let (head, rest) = f.split_at_mut(2048);
    let mut fr = Frame {
        head,
        len: n,
        tail: std::iter::once(&*rest),
    };
    assert_eq!(
        icmpecho(&mut fr, &PORT),
        Verdict::Drop(Reason::BadIcmpChecksum)
    );
}

#[test]
fn icmpv6_echo_reply_verifies() {
    let mut f = ping6(1, 0x20);
    assert_eq!(echo(&mut f), Verdict::Forward);
    let ip = &f[14..];
    let (s, d): ([u8; 16], [u8; 16]) = (
        ip[8..24].try_into().unwrap(),
        ip[24..40].try_into().unwrap(),
    );
    assert_eq!((s[15], d[15], ip[7], ip[40]), (2, 1, REPLY_TTL, 129));
    let plen = ip.len() - 40;
    assert_eq!(
        checksum::finish(sum(pseudo_v6(&s, &d, 58, plen as u32), &ip[40..])),
        0
    );
    assert_eq!((&f[0..6], &f[6..12]), (&A[..], &PORT[..]));
}

#[test]
fn garbage_never_panics() {
    // Every length 0..=90 of every pattern, through every edit.
    for len in 0..=90usize {
        for seed in 0u8..=15 {
            let mut f: Vec<u8> = (0..len)
                .map(|i| (i as u8).wrapping_mul(seed).wrapping_add(seed))
                .collect();
            if len > 14 {
                let et: [u16; 6] = [0x0800, 0x86dd, 0x0806, 0x8100, 0x88a8, 0x0800];
                f[12..14].copy_from_slice(&et[seed as usize % 6].to_be_bytes());
                f[14] = if seed % 2 == 0 { 0x45 } else { 0x60 };
            }
            if len > 18 && seed % 3 == 0 {
                f[16..18].copy_from_slice(&0x0800u16.to_be_bytes());
                f[18] = 0x45;
            }
            let _ = macswap(&mut f.clone());
            let _ = five_tuple_swap(&mut f.clone(), len);
            let _ = five_tuple_swap(&mut f.clone(), len + 100);
            let _ = echo(&mut f.clone());
            let _ = mac(&mut f, &[1; 6], &[2; 6]);
        }
    }
}
