//! ICMP (v4) and ICMPv6 echo messages.

use super::checksum;
use super::{be16, need, put16, WireError};

/// ICMPv4 echo request.
pub const V4_ECHO_REQUEST: u8 = 8;
/// ICMPv4 echo reply.
pub const V4_ECHO_REPLY: u8 = 0;
/// ICMPv6 echo request.
pub const V6_ECHO_REQUEST: u8 = 128;
/// ICMPv6 echo reply.
pub const V6_ECHO_REPLY: u8 = 129;

/// A view of an ICMP message (type, code, checksum, rest).
#[derive(Debug)]
pub struct IcmpPacket<T: AsRef<[u8]>> {
    buf: T,
}

impl<T: AsRef<[u8]>> IcmpPacket<T> {
    /// Wrap `buf` (at least the 8-byte echo header).
    ///
    /// # Errors
    /// [`WireError::Truncated`].
    pub fn new_checked(buf: T) -> Result<Self, WireError> {
        need("icmp header", buf.as_ref().len(), 8)?;
        Ok(IcmpPacket { buf })
    }

    /// Message type.
    pub fn msg_type(&self) -> u8 {
        self.buf.as_ref()[0]
    }

    /// Code.
    pub fn code(&self) -> u8 {
        self.buf.as_ref()[1]
    }

    /// Checksum field.
    pub fn checksum_field(&self) -> u16 {
        be16(self.buf.as_ref(), 2)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> IcmpPacket<T> {
    /// Set the type.
    pub fn set_msg_type(&mut self, t: u8) {
        self.buf.as_mut()[0] = t;
    }

    /// Recompute the checksum over the whole message, starting from the
    /// pseudo-header sum `pseudo` (0 for ICMPv4).
    pub fn fill_checksum(&mut self, pseudo: u32) {
        let b = self.buf.as_mut();
        put16(b, 2, 0);
        let c = checksum::finish(checksum::sum(pseudo, b));
        put16(b, 2, c);
    }
}
