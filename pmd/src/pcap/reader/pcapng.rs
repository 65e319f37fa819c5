//! pcapng (draft-ietf-opsawg-pcapng): section headers (each with its byte
//! order), interface descriptions (link type, snaplen, `if_tsresol`,
//! `if_tsoffset`) and the packet blocks (EPB, SPB, the obsolete PB);
//! other blocks are skipped.

use super::{err, Bytes, FormatError, Record, LINKTYPE_ETHERNET, MAX_SNAPLEN};

pub(super) const NG_SHB: u32 = 0x0a0d_0d0a;
const NG_IDB: u32 = 1;
const NG_PB: u32 = 2;
const NG_SPB: u32 = 3;
const NG_EPB: u32 = 6;
const NG_BOM: u32 = 0x1a2b_3c4d;
const NG_OPT_TSRESOL: u16 = 9;
const NG_OPT_TSOFFSET: u16 = 14;

/// An interface of the current pcapng section.
#[derive(Debug, Clone, Copy)]
struct Iface {
    linktype: u16,
    snaplen: u32,
    /// `if_tsresol`: bit 7 clear → 10^-n s, set → 2^-n s.
    tsresol: u8,
    tsoffset_s: i64,
}

impl Iface {
    fn ts_ns(&self, units: u64) -> u64 {
        let e = u32::from(self.tsresol & 0x7f);
        let ns: u128 = if self.tsresol & 0x80 == 0 {
            if e <= 9 {
                units as u128 * 10u128.pow(9 - e)
            } else {
                units as u128 / 10u128.pow((e - 9).min(38))
            }
        } else if e >= 127 {
            0
        } else {
            (units as u128 * 1_000_000_000) >> e
        };
        let ns = ns as i128 + self.tsoffset_s as i128 * 1_000_000_000;
        ns.clamp(0, u64::MAX as i128) as u64
    }
}

/// Index the packet records of a pcapng file (it starts with an SHB).
pub(super) fn parse(data: &[u8]) -> Result<Vec<Record>, FormatError> {
    let mut records = Vec::new();
    let mut ifaces: Vec<Iface> = Vec::new();
    let mut be = false;
    let mut off = 0usize;
    while off < data.len() {
        let left = data.len() - off;
        if left < 12 {
            return err(
                off,
                format!("truncated pcapng block header: 12 bytes needed, {left} left"),
            );
        }
        let raw_type = u32::from_le_bytes(data[off..off + 4].try_into().unwrap_or([0; 4]));
        if raw_type == NG_SHB {
            // The byte-order magic of this section decides how to read it.
            let bom = u32::from_le_bytes(data[off + 8..off + 12].try_into().unwrap_or([0; 4]));
            be = match bom {
                NG_BOM => false,
                m if m.swap_bytes() == NG_BOM => true,
                m => {
                    return err(
                        off + 8,
                        format!("bad pcapng byte-order magic 0x{m:08x} (expected 1a2b3c4d)"),
                    )
                }
            };
        } else if off == 0 {
            return err(0, "a pcapng file must start with a section header block");
        }
        let b = Bytes { d: data, be };
        let btype = b.u32(off).unwrap_or(0);
        let blen = b.u32(off + 4).unwrap_or(0) as usize;
        if blen < 12 || !blen.is_multiple_of(4) {
            return err(
                off,
                format!("block type 0x{btype:x} has length {blen}: must be a multiple of 4 and at least 12"),
            );
        }
        if blen > left {
            return err(
                off,
                format!(
                    "truncated block type 0x{btype:x}: length {blen} but only {left} bytes left"
                ),
            );
        }
        let trailer = b.u32(off + blen - 4).unwrap_or(0) as usize;
        if trailer != blen {
            return err(
                off,
                format!(
                    "block length mismatch in block type 0x{btype:x}: leading length {blen}, trailing length {trailer}"
                ),
            );
        }
        let short = |need: usize, what: &str| {
            err::<()>(
                off,
                format!("{what} block of {blen} bytes is shorter than its {need}-byte minimum"),
            )
        };
        match btype {
            NG_SHB => {
                if blen < 28 {
                    short(28, "section header")?;
                }
                let major = b.u16(off + 12).unwrap_or(0);
                if major != 1 {
                    return err(
                        off + 12,
                        format!("unsupported pcapng version {major} (expected 1)"),
                    );
                }
                ifaces.clear();
            }
            NG_IDB => {
                if blen < 20 {
                    short(20, "interface description")?;
                }
                let mut iface = Iface {
                    linktype: b.u16(off + 8).unwrap_or(0),
                    snaplen: b.u32(off + 12).unwrap_or(0),
                    tsresol: 6,
                    tsoffset_s: 0,
                };
                parse_idb_options(b, off + 16, off + blen - 4, &mut iface)?;
                ifaces.push(iface);
            }
            NG_EPB | NG_PB => {
                if blen < 32 {
                    short(32, "packet")?;
                }
                let id = if btype == NG_EPB {
                    b.u32(off + 8).unwrap_or(0)
                } else {
                    b.u16(off + 8).unwrap_or(0) as u32
                };
                let ts = (b.u32(off + 12).unwrap_or(0) as u64) << 32
                    | b.u32(off + 16).unwrap_or(0) as u64;
                let caplen = b.u32(off + 20).unwrap_or(0);
                let orig_len = b.u32(off + 24).unwrap_or(0);
                let iface = packet_iface(&ifaces, id, off, records.len())?;
                let room = blen - 32;
                if caplen as usize > room {
                    return err(
                        off,
                        format!(
                            "packet {}: caplen {caplen} overruns its block (room for {room} bytes)",
                            records.len()
                        ),
                    );
                }
                check_caplen(caplen, &iface, off, records.len())?;
                records.push(Record {
                    off: off + 28,
                    caplen,
                    orig_len,
                    ts_ns: iface.ts_ns(ts),
                    iface: id,
                });
            }
            NG_SPB => {
                if blen < 16 {
                    short(16, "simple packet")?;
                }
                let orig_len = b.u32(off + 8).unwrap_or(0);
                let iface = packet_iface(&ifaces, 0, off, records.len())?;
                let mut caplen = (orig_len as usize).min(blen - 16) as u32;
                if iface.snaplen != 0 {
                    caplen = caplen.min(iface.snaplen);
                }
                check_caplen(caplen, &iface, off, records.len())?;
                records.push(Record {
                    off: off + 12,
                    caplen,
                    orig_len,
                    ts_ns: 0,
                    iface: 0,
                });
            }
            _ => {} // Name resolution, statistics, custom, …: not frames.
        }
        off += blen;
    }
    Ok(records)
}

fn packet_iface(ifaces: &[Iface], id: u32, off: usize, n: usize) -> Result<Iface, FormatError> {
    let Some(iface) = ifaces.get(id as usize) else {
        return err(
            off,
            format!(
                "packet {n} names interface {id} but the section describes {} interfaces",
                ifaces.len()
            ),
        );
    };
    if u32::from(iface.linktype) != LINKTYPE_ETHERNET {
        return err(
            off,
            format!(
                "packet {n} is from interface {id} of link type {} (not Ethernet): only Ethernet can be replayed",
                iface.linktype
            ),
        );
    }
    Ok(*iface)
}

fn check_caplen(caplen: u32, iface: &Iface, off: usize, n: usize) -> Result<(), FormatError> {
    let limit = if iface.snaplen == 0 || iface.snaplen > MAX_SNAPLEN {
        MAX_SNAPLEN
    } else {
        iface.snaplen
    };
    if caplen > limit {
        return err(
            off,
            format!("packet {n} has caplen {caplen} above its interface's snaplen {limit}"),
        );
    }
    Ok(())
}

fn parse_idb_options(
    b: Bytes<'_>,
    mut at: usize,
    end: usize,
    iface: &mut Iface,
) -> Result<(), FormatError> {
    while at + 4 <= end {
        let code = b.u16(at).unwrap_or(0);
        let len = b.u16(at + 2).unwrap_or(0) as usize;
        if code == 0 {
            break;
        }
        let padded = (len + 3) & !3;
        if at + 4 + padded > end {
            return err(
                at,
                format!("interface option {code} of length {len} overruns its block"),
            );
        }
        match (code, len) {
            (NG_OPT_TSRESOL, 1) => iface.tsresol = b.d[at + 4],
            (NG_OPT_TSOFFSET, 8) => iface.tsoffset_s = b.u64(at + 4).unwrap_or(0) as i64,
            _ => {}
        }
        at += 4 + padded;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::Capture;
    use super::*;

    #[test]
    fn tsresol_conversions() {
        let mut i = Iface {
            linktype: 1,
            snaplen: 0,
            tsresol: 6,
            tsoffset_s: 0,
        };
        assert_eq!(i.ts_ns(1_500_000), 1_500_000_000);
        i.tsresol = 9;
        assert_eq!(i.ts_ns(7), 7);
        i.tsresol = 0x80 | 10; // 1/1024 s
        assert_eq!(i.ts_ns(1024), 1_000_000_000);
        i.tsresol = 12;
        assert_eq!(i.ts_ns(5000), 5);
        i.tsresol = 0xff;
        assert_eq!(i.ts_ns(u64::MAX), 0);
    }

    #[test]
    fn garbage_never_panics() {
        // A cheap deterministic fuzz: every prefix and many byte flips of a
        // small valid pcapng file parse or fail cleanly.
        let mut f = Vec::new();
        let shb = |f: &mut Vec<u8>| {
            f.extend_from_slice(&NG_SHB.to_le_bytes());
            f.extend_from_slice(&28u32.to_le_bytes());
            f.extend_from_slice(&NG_BOM.to_le_bytes());
            f.extend_from_slice(&1u16.to_le_bytes());
            f.extend_from_slice(&0u16.to_le_bytes());
            f.extend_from_slice(&(-1i64).to_le_bytes());
            f.extend_from_slice(&28u32.to_le_bytes());
        };
        shb(&mut f);
        for w in [1u32, 20, 1, 0xffff, 20] {
            f.extend_from_slice(&w.to_le_bytes());
        }
        for w in [6u32, 48, 0, 0, 1, 14, 14] {
            f.extend_from_slice(&w.to_le_bytes());
        }
        f.extend_from_slice(&[0xab; 16]);
        f.extend_from_slice(&48u32.to_le_bytes());
        let c = Capture::parse(f.clone()).unwrap();
        assert_eq!(c.len(), 1);
        assert_eq!(c.frame(0), &[0xab; 14]);
        for n in 0..f.len() {
            let _ = Capture::parse(f[..n].to_vec());
        }
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let mut g = f.clone();
            let i = (x as usize) % g.len();
            g[i] = (x >> 32) as u8;
            let _ = Capture::parse(g);
        }
    }
}
