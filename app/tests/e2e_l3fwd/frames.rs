//! The expected output of the router, computed independently of xfwd:
//! shared by the l3fwd end-to-end tests (`#[path]`-included).

/// The IPv4 header checksum computed from scratch (the field skipped).
pub fn ip_checksum(h: &[u8]) -> u16 {
    let mut s: u32 = 0;
    for (i, c) in h.chunks(2).enumerate() {
        if i != 5 {
            s += u32::from(u16::from_be_bytes([c[0], c[1]]));
        }
    }
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    !(s as u16)
}

/// What the router must make of `f` (L3 at `off`) sent to next hop `dst`
/// from a port of MAC `src`: MACs rewritten, TTL − 1 with a checksum
/// computed from scratch, or hop limit − 1.
pub fn routed(f: &[u8], off: usize, dst: [u8; 6], src: [u8; 6]) -> Vec<u8> {
    let mut o = f.to_vec();
    o[0..6].copy_from_slice(&dst);
    o[6..12].copy_from_slice(&src);
    if o[off] >> 4 == 4 {
        o[off + 8] -= 1;
        let ihl = usize::from(o[off] & 15) * 4;
        let c = ip_checksum(&o[off..off + ihl]);
        o[off + 10..off + 12].copy_from_slice(&c.to_be_bytes());
    } else {
        o[off + 7] -= 1;
    }
    o
}
