//! The port fields shared by UDP and TCP (the first four bytes), and the
//! checksum fix-up needed when the ports or the pseudo-header change.

use super::{need, put16, swap_ranges, IpProto, WireError};

/// A view of the source/destination ports of a UDP or TCP header.
#[derive(Debug)]
pub struct PortsHeader<T: AsRef<[u8]>> {
    buf: T,
    proto: IpProto,
}

impl<T: AsRef<[u8]>> PortsHeader<T> {
    /// Wrap the L4 bytes of `proto` (UDP: 8-byte header, TCP: 20).
    ///
    /// # Errors
    /// [`WireError::Truncated`], or [`WireError::Malformed`] for another protocol.
    pub fn new_checked(buf: T, proto: IpProto) -> Result<Self, WireError> {
        let len = buf.as_ref().len();
        match proto {
            IpProto::Udp => need("udp header", len, 8)?,
            IpProto::Tcp => need("tcp header", len, 20)?,
            _ => {
                return Err(WireError::Malformed {
                    what: "l4 protocol (not udp/tcp)",
                })
            }
        }
        Ok(PortsHeader { buf, proto })
    }

    /// Source port.
    pub fn src_port(&self) -> u16 {
        super::be16(self.buf.as_ref(), 0)
    }

    /// Destination port.
    pub fn dst_port(&self) -> u16 {
        super::be16(self.buf.as_ref(), 2)
    }

    /// Offset of the checksum field.
    fn checksum_at(&self) -> usize {
        if self.proto == IpProto::Udp {
            6
        } else {
            16
        }
    }

    /// The checksum field.
    pub fn checksum(&self) -> u16 {
        super::be16(self.buf.as_ref(), self.checksum_at())
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> PortsHeader<T> {
    /// Swap the ports (the checksum is unchanged: sum order does not matter).
    pub fn swap_ports(&mut self) {
        swap_ranges(self.buf.as_mut(), 0..2, 2..4);
    }

    /// Set the source port (checksum not updated).
    pub fn set_src_port(&mut self, p: u16) {
        put16(self.buf.as_mut(), 0, p);
    }

    /// Set the destination port (checksum not updated).
    pub fn set_dst_port(&mut self, p: u16) {
        put16(self.buf.as_mut(), 2, p);
    }

    /// Set the checksum field.
    pub fn set_checksum(&mut self, c: u16) {
        let at = self.checksum_at();
        put16(self.buf.as_mut(), at, c);
    }
}
