//! The memif control protocol, version 2.0: 128-byte messages on a
//! `SOCK_SEQPACKET` Unix socket, little-endian, packed (DPDK's `memif.h`,
//! VPP's libmemif). Encoding and decoding only; no I/O.
//!
//! ```text
//! client                               server
//!   connect ───────────────────────────▶ accept
//!           ◀──────────────────────────── HELLO (name, versions, max rings/regions/log2)
//!   INIT (version, id, mode, secret, name) ──▶            ◀── ACK
//!   ADD_REGION (index, size) + fd ─────▶                  ◀── ACK   (per region)
//!   ADD_RING (flags, index, region, offset, log2, 0) + eventfd ──▶ ◀── ACK (per ring)
//!   CONNECT (if name) ─────────────────▶                  ◀── CONNECTED (if name)
//!   either side: DISCONNECT (code, reason), then close
//! ```

/// Every message is this long.
pub const MSG_SIZE: usize = 128;
/// Protocol version 2.0 (`major << 8 | minor`).
pub const VERSION: u16 = 0x0200;
/// Ring header cookie.
pub const COOKIE: u32 = 0x03E3_1F20;
/// Name fields are this long (NUL-padded).
pub const NAME_SZ: usize = 32;
/// Secret field length.
pub const SECRET_SZ: usize = 24;
/// Disconnect reason length.
pub const REASON_SZ: usize = 96;
/// `ADD_RING` flag: the ring carries client → server packets.
pub const ADD_RING_FLAG_C2S: u16 = 1;
/// Descriptor flag: the packet continues in the next descriptor.
pub const DESC_FLAG_NEXT: u16 = 1;
/// Ring flag: the receiver polls; do not kick its eventfd.
pub const RING_FLAG_MASK_INT: u16 = 1;
/// Largest ring we accept or offer (log2), as DPDK.
pub const MAX_LOG2_RING: u8 = 14;
/// Most regions we accept from a client.
pub const MAX_REGIONS: u16 = 256;
/// Bytes of a ring header before its descriptors (three 64-byte lines:
/// cookie/flags/head, tail, then descriptors at 128).
pub const RING_HDR: usize = 128;
/// Bytes per descriptor.
pub const DESC_SIZE: usize = 16;

/// Message types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u16)]
pub enum MsgType {
    /// Acknowledge.
    Ack = 1,
    /// Server greeting.
    Hello = 2,
    /// Client identification.
    Init = 3,
    /// Shared memory region (fd attached).
    AddRegion = 4,
    /// Ring (eventfd attached).
    AddRing = 5,
    /// Client done.
    Connect = 6,
    /// Server done.
    Connected = 7,
    /// Tear down with a reason.
    Disconnect = 8,
}

/// A decoded message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Msg {
    /// ACK.
    Ack,
    /// HELLO.
    Hello(Hello),
    /// INIT.
    Init(Init),
    /// ADD_REGION.
    AddRegion {
        /// Region index.
        index: u16,
        /// Region size in bytes.
        size: u64,
    },
    /// ADD_RING.
    AddRing(AddRing),
    /// CONNECT with the client's interface name.
    Connect(String),
    /// CONNECTED with the server's interface name.
    Connected(String),
    /// DISCONNECT.
    Disconnect {
        /// Error code.
        code: u32,
        /// Reason.
        reason: String,
    },
}

/// HELLO fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hello {
    /// Peer application name.
    pub name: String,
    /// Lowest version spoken.
    pub min_version: u16,
    /// Highest version spoken.
    pub max_version: u16,
    /// Highest region index accepted.
    pub max_region: u16,
    /// Highest client → server ring index accepted.
    pub max_c2s_ring: u16,
    /// Highest server → client ring index accepted.
    pub max_s2c_ring: u16,
    /// Largest ring, log2.
    pub max_log2_ring_size: u8,
}

/// INIT fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Init {
    /// Version the client uses.
    pub version: u16,
    /// Interface id.
    pub id: u32,
    /// Mode (0 = ethernet).
    pub mode: u8,
    /// Secret (NUL-padded).
    pub secret: [u8; SECRET_SZ],
    /// Client application name.
    pub name: String,
}

/// ADD_RING fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddRing {
    /// Flags ([`ADD_RING_FLAG_C2S`]).
    pub flags: u16,
    /// Ring index in its direction.
    pub index: u16,
    /// Region holding the ring.
    pub region: u16,
    /// Offset of the ring header in the region.
    pub offset: u32,
    /// Ring size, log2.
    pub log2_ring_size: u8,
    /// Private header size (must be 0).
    pub private_hdr_size: u16,
}

/// Why a message could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Not 128 bytes.
    #[error("invalid message size {0} (expected {MSG_SIZE})")]
    Size(usize),
    /// Unknown type.
    #[error("unknown message type {0}")]
    Type(u16),
}

fn u16_at(b: &[u8], o: usize) -> u16 {
    u16::from_le_bytes([b[o], b[o + 1]])
}
fn u32_at(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes(b[o..o + 4].try_into().expect("4 bytes"))
}
fn u64_at(b: &[u8], o: usize) -> u64 {
    u64::from_le_bytes(b[o..o + 8].try_into().expect("8 bytes"))
}
fn str_at(b: &[u8], o: usize, n: usize) -> String {
    let f = &b[o..o + n];
    let end = f.iter().position(|&c| c == 0).unwrap_or(n);
    String::from_utf8_lossy(&f[..end]).into_owned()
}
fn put_str(b: &mut [u8], o: usize, n: usize, s: &str) {
    // Truncated to leave room for a NUL, as strlcpy does.
    let s = s.as_bytes();
    let k = s.len().min(n - 1);
    b[o..o + k].copy_from_slice(&s[..k]);
}

// Body fields start after the 16-bit type.
const B: usize = 2;

impl Msg {
    /// The message type.
    pub fn kind(&self) -> MsgType {
        match self {
            Msg::Ack => MsgType::Ack,
            Msg::Hello(_) => MsgType::Hello,
            Msg::Init(_) => MsgType::Init,
            Msg::AddRegion { .. } => MsgType::AddRegion,
            Msg::AddRing(_) => MsgType::AddRing,
            Msg::Connect(_) => MsgType::Connect,
            Msg::Connected(_) => MsgType::Connected,
            Msg::Disconnect { .. } => MsgType::Disconnect,
        }
    }

    /// Encode into a 128-byte message.
    pub fn encode(&self) -> [u8; MSG_SIZE] {
        let mut b = [0u8; MSG_SIZE];
        b[0..2].copy_from_slice(&(self.kind() as u16).to_le_bytes());
        match self {
            Msg::Ack => {}
            Msg::Hello(h) => {
                put_str(&mut b, B, NAME_SZ, &h.name);
                b[B + 32..B + 34].copy_from_slice(&h.min_version.to_le_bytes());
                b[B + 34..B + 36].copy_from_slice(&h.max_version.to_le_bytes());
                b[B + 36..B + 38].copy_from_slice(&h.max_region.to_le_bytes());
                b[B + 38..B + 40].copy_from_slice(&h.max_c2s_ring.to_le_bytes());
                b[B + 40..B + 42].copy_from_slice(&h.max_s2c_ring.to_le_bytes());
                b[B + 42] = h.max_log2_ring_size;
            }
            Msg::Init(i) => {
                b[B..B + 2].copy_from_slice(&i.version.to_le_bytes());
                b[B + 2..B + 6].copy_from_slice(&i.id.to_le_bytes());
                b[B + 6] = i.mode;
                b[B + 7..B + 7 + SECRET_SZ].copy_from_slice(&i.secret);
                put_str(&mut b, B + 31, NAME_SZ, &i.name);
            }
            Msg::AddRegion { index, size } => {
                b[B..B + 2].copy_from_slice(&index.to_le_bytes());
                b[B + 2..B + 10].copy_from_slice(&size.to_le_bytes());
            }
            Msg::AddRing(r) => {
                b[B..B + 2].copy_from_slice(&r.flags.to_le_bytes());
                b[B + 2..B + 4].copy_from_slice(&r.index.to_le_bytes());
                b[B + 4..B + 6].copy_from_slice(&r.region.to_le_bytes());
                b[B + 6..B + 10].copy_from_slice(&r.offset.to_le_bytes());
                b[B + 10] = r.log2_ring_size;
                b[B + 11..B + 13].copy_from_slice(&r.private_hdr_size.to_le_bytes());
            }
            Msg::Connect(n) | Msg::Connected(n) => put_str(&mut b, B, NAME_SZ, n),
            Msg::Disconnect { code, reason } => {
                b[B..B + 4].copy_from_slice(&code.to_le_bytes());
                put_str(&mut b, B + 4, REASON_SZ, reason);
            }
        }
        b
    }

    /// Decode a received message of `b.len()` bytes.
    ///
    /// # Errors
    /// [`DecodeError`] for a wrong size or an unknown type.
    pub fn decode(b: &[u8]) -> Result<Msg, DecodeError> {
        if b.len() != MSG_SIZE {
            return Err(DecodeError::Size(b.len()));
        }
        Ok(match u16_at(b, 0) {
            1 => Msg::Ack,
            2 => Msg::Hello(Hello {
                name: str_at(b, B, NAME_SZ),
                min_version: u16_at(b, B + 32),
                max_version: u16_at(b, B + 34),
                max_region: u16_at(b, B + 36),
                max_c2s_ring: u16_at(b, B + 38),
                max_s2c_ring: u16_at(b, B + 40),
                max_log2_ring_size: b[B + 42],
            }),
            3 => Msg::Init(Init {
                version: u16_at(b, B),
                id: u32_at(b, B + 2),
                mode: b[B + 6],
                secret: b[B + 7..B + 7 + SECRET_SZ].try_into().expect("24 bytes"),
                name: str_at(b, B + 31, NAME_SZ),
            }),
            4 => Msg::AddRegion {
                index: u16_at(b, B),
                size: u64_at(b, B + 2),
            },
            5 => Msg::AddRing(AddRing {
                flags: u16_at(b, B),
                index: u16_at(b, B + 2),
                region: u16_at(b, B + 4),
                offset: u32_at(b, B + 6),
                log2_ring_size: b[B + 10],
                private_hdr_size: u16_at(b, B + 11),
            }),
            6 => Msg::Connect(str_at(b, B, NAME_SZ)),
            7 => Msg::Connected(str_at(b, B, NAME_SZ)),
            8 => Msg::Disconnect {
                code: u32_at(b, B),
                reason: str_at(b, B + 4, REASON_SZ),
            },
            t => return Err(DecodeError::Type(t)),
        })
    }
}

/// Bytes of a ring of `1 << log2` descriptors, header included.
pub fn ring_bytes(log2: u8) -> usize {
    RING_HDR + DESC_SIZE * (1usize << log2)
}

/// A secret as sent: NUL-padded to 24 bytes.
pub fn secret_bytes(s: &str) -> [u8; SECRET_SZ] {
    let mut out = [0u8; SECRET_SZ];
    let k = s.len().min(SECRET_SZ);
    out[..k].copy_from_slice(&s.as_bytes()[..k]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_message_roundtrips() {
        let msgs = [
            Msg::Ack,
            Msg::Hello(Hello {
                name: "DPDK 22.11.11".into(),
                min_version: VERSION,
                max_version: VERSION,
                max_region: 255,
                max_c2s_ring: 255,
                max_s2c_ring: 255,
                max_log2_ring_size: 14,
            }),
            Msg::Init(Init {
                version: VERSION,
                id: 7,
                mode: 0,
                secret: secret_bytes("s3cr3t"),
                name: "xfwd".into(),
            }),
            Msg::AddRegion {
                index: 0,
                size: 4 << 20,
            },
            Msg::AddRing(AddRing {
                flags: ADD_RING_FLAG_C2S,
                index: 1,
                region: 0,
                offset: 16512,
                log2_ring_size: 10,
                private_hdr_size: 0,
            }),
            Msg::Connect("memif0".into()),
            Msg::Connected("net_memif0".into()),
            Msg::Disconnect {
                code: 3,
                reason: "bye".into(),
            },
        ];
        for m in msgs {
            let b = m.encode();
            assert_eq!(Msg::decode(&b).unwrap(), m);
        }
    }

    #[test]
    fn layout_is_dpdks_packed_layout() {
        // INIT: version@2, id@4, mode@8, secret@9, name@33 (packed, after the type).
        let b = Msg::Init(Init {
            version: 0x0200,
            id: 0x0403_0201,
            mode: 0,
            secret: secret_bytes("ab"),
            name: "n".into(),
        })
        .encode();
        assert_eq!(&b[0..2], &[3, 0]);
        assert_eq!(&b[2..4], &[0, 2]);
        assert_eq!(&b[4..8], &[1, 2, 3, 4]);
        assert_eq!(&b[9..11], b"ab");
        assert_eq!(b[33], b'n');
        // ADD_RING: offset@8 (u32), log2@12, private_hdr_size@13.
        let b = Msg::AddRing(AddRing {
            flags: 1,
            index: 2,
            region: 3,
            offset: 0x1122_3344,
            log2_ring_size: 10,
            private_hdr_size: 0,
        })
        .encode();
        assert_eq!(&b[2..8], &[1, 0, 2, 0, 3, 0]);
        assert_eq!(&b[8..12], &[0x44, 0x33, 0x22, 0x11]);
        assert_eq!(b[12], 10);
        assert_eq!(ring_bytes(10), 128 + 16 * 1024);
    }

    #[test]
    fn bad_messages_are_named() {
        assert_eq!(Msg::decode(&[0u8; 64]), Err(DecodeError::Size(64)));
        let mut b = [0u8; MSG_SIZE];
        b[0] = 99;
        assert_eq!(Msg::decode(&b), Err(DecodeError::Type(99)));
        // A reason longer than the field is cut, NUL-terminated.
        let long = "x".repeat(200);
        let b = Msg::Disconnect {
            code: 0,
            reason: long,
        }
        .encode();
        match Msg::decode(&b).unwrap() {
            Msg::Disconnect { reason, .. } => assert_eq!(reason.len(), REASON_SZ - 1),
            m => panic!("{m:?}"),
        }
    }
}
