//! Classic pcap (`pcap-savefile(5)`): a 24-byte file header (magic, version,
//! snaplen, link type) and 16-byte record headers, in either byte order,
//! with micro- or nanosecond timestamps.

use super::{err, Bytes, CaptureFormat, FormatError, Record, LINKTYPE_ETHERNET, MAX_SNAPLEN};

pub(super) const PCAP_MAGIC_US: u32 = 0xa1b2_c3d4;
pub(super) const PCAP_MAGIC_NS: u32 = 0xa1b2_3c4d;
const PCAP_HDR: usize = 24;
const PCAP_REC_HDR: usize = 16;

/// Index the records of a classic pcap file in byte order `be` (the magic
/// was read by [`super::Capture::parse`]).
pub(super) fn parse(
    data: &[u8],
    be: bool,
    nanos: bool,
) -> Result<(Vec<Record>, CaptureFormat), FormatError> {
    let b = Bytes { d: data, be };
    if data.len() < PCAP_HDR {
        return err(
            0,
            format!(
                "truncated pcap file header: {PCAP_HDR} bytes needed, {} present",
                data.len()
            ),
        );
    }
    let (major, minor) = (b.u16(4).unwrap_or(0), b.u16(6).unwrap_or(0));
    if major != 2 {
        return err(
            4,
            format!("unsupported pcap version {major}.{minor} (expected 2.x)"),
        );
    }
    let snaplen = b.u32(16).unwrap_or(0);
    let linktype = b.u32(20).unwrap_or(0) & 0x0fff_ffff;
    if linktype != LINKTYPE_ETHERNET {
        return err(
            20,
            format!(
                "link type {linktype} is not Ethernet (1): only Ethernet captures can be replayed"
            ),
        );
    }
    // libpcap treats a snaplen of 0 or above its maximum as the maximum.
    let limit = if snaplen == 0 || snaplen > MAX_SNAPLEN {
        MAX_SNAPLEN
    } else {
        snaplen
    };
    let mut records = Vec::new();
    let mut off = PCAP_HDR;
    while off < data.len() {
        let left = data.len() - off;
        if left < PCAP_REC_HDR {
            return err(
                off,
                format!(
                    "truncated record header: {PCAP_REC_HDR} bytes needed, {left} left in the file"
                ),
            );
        }
        let sec = b.u32(off).unwrap_or(0) as u64;
        let frac = b.u32(off + 4).unwrap_or(0) as u64;
        let caplen = b.u32(off + 8).unwrap_or(0);
        let orig_len = b.u32(off + 12).unwrap_or(0);
        if caplen > limit {
            return err(
                off,
                format!(
                    "record {} has caplen {caplen} above the file's snaplen {limit}",
                    records.len()
                ),
            );
        }
        let body = left - PCAP_REC_HDR;
        if caplen as usize > body {
            return err(
                off,
                format!(
                    "truncated record {}: caplen {caplen} but only {body} bytes left in the file",
                    records.len()
                ),
            );
        }
        let ts_ns = sec.saturating_mul(1_000_000_000).saturating_add(if nanos {
            frac
        } else {
            frac * 1000
        });
        records.push(Record {
            off: off + PCAP_REC_HDR,
            caplen,
            orig_len,
            ts_ns,
            iface: 0,
        });
        off += PCAP_REC_HDR + caplen as usize;
    }
    Ok((
        records,
        CaptureFormat::Pcap {
            big_endian: be,
            nanos,
        },
    ))
}
