//! The Internet checksum (RFC 1071) and its pseudo-headers.

/// One's-complement sum of `data` added to `acc` (not folded).
#[inline]
pub fn sum(mut acc: u32, data: &[u8]) -> u32 {
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        acc += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = chunks.remainder() {
        acc += u32::from(*last) << 8;
    }
    acc
}

/// Fold a sum to 16 bits and complement it: the value to store.
#[inline]
pub fn finish(acc: u32) -> u16 {
    !fold(acc)
}

/// Checksum of `data` (a header whose checksum field is zero, or the whole
/// message to verify: then the result is 0 when valid).
#[inline]
pub fn checksum(data: &[u8]) -> u16 {
    finish(sum(0, data))
}

/// Fold a sum to 16 bits (not complemented).
#[inline]
pub fn fold(mut acc: u32) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

/// Sum (folded, not complemented) of bytes `from..to` of a frame stored as
/// `head` followed by the `tail` segments, as if they were one buffer and
/// `from` an even offset: a segment that starts at an odd position of the
/// range contributes its byte-swapped sum (RFC 1071's byte-order
/// independence). Bytes past the chain's end count as absent.
pub fn sum_chain<'a>(
    head: &'a [u8],
    tail: impl Iterator<Item = &'a [u8]>,
    from: usize,
    to: usize,
) -> u16 {
    let (mut acc, mut odd, mut pos) = (0u32, false, 0usize);
    for seg in std::iter::once(head).chain(tail) {
        let (s, e) = (pos, pos + seg.len());
        pos = e;
        let (lo, hi) = (from.max(s), to.min(e));
        if lo < hi {
            let part = fold(sum(0, &seg[lo - s..hi - s]));
            acc += u32::from(if odd { part.swap_bytes() } else { part });
            odd ^= (hi - lo) % 2 == 1;
        }
        if e >= to {
            break;
        }
    }
    fold(acc)
}

/// IPv4 pseudo-header sum for an upper-layer checksum.
pub fn pseudo_v4(src: &[u8; 4], dst: &[u8; 4], proto: u8, len: u16) -> u32 {
    let acc = sum(sum(0, src), dst);
    acc + u32::from(proto) + u32::from(len)
}

/// IPv6 pseudo-header sum for an upper-layer checksum.
pub fn pseudo_v6(src: &[u8; 16], dst: &[u8; 16], proto: u8, len: u32) -> u32 {
    let acc = sum(sum(0, src), dst);
    acc + (len >> 16) + (len & 0xffff) + u32::from(proto)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc1071_example() {
        // RFC 1071 section 3: 0001 f203 f4f5 f6f7 sums to ddf2.
        let d = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(finish(sum(0, &d)), !0xddf2);
        assert_eq!(checksum(&[0xab]), !0xab00);
    }

    #[test]
    fn a_chain_sums_like_one_buffer_wherever_it_is_split() {
        let data: Vec<u8> = (0..301u32).map(|i| (i * 37 + 11) as u8).collect();
        for (from, to) in [(0, 301), (4, 301), (2, 150), (10, 11)] {
            let want = fold(sum(0, &data[from..to]));
            for a in [1usize, 7, 64, 150, 200] {
                for b in [a + 1, a + 33, a + 64, 300] {
                    let b = b.min(301);
                    let segs = [&data[a..b], &data[b..]];
                    let got = sum_chain(&data[..a], segs.iter().copied(), from, to);
                    assert_eq!(got, want, "from {from} to {to} split {a}/{b}");
                }
            }
        }
    }
}
