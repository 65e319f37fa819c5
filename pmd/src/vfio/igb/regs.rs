//! 82576 register offsets and bits (Intel 82576 GbE controller datasheet,
//! §8; the same names as Linux's and DPDK's e1000 code use).
//!
//! Every register access of the driver goes through [`Regs`]: the BAR0
//! window ([`Mmio`]) on a device, a register-model double in unit tests.

use crate::vfio::mmio::Mmio;

/// 32-bit register access (BAR0 of the 82576 is 128 KiB of 32-bit registers).
pub trait Regs: Send + Sync + std::fmt::Debug {
    /// Read the register at byte offset `off`.
    fn rd(&self, off: usize) -> u32;
    /// Write the register at byte offset `off`.
    fn wr(&self, off: usize, v: u32);
}

impl Regs for Mmio {
    fn rd(&self, off: usize) -> u32 {
        self.read32(off)
    }
    fn wr(&self, off: usize, v: u32) {
        self.write32(off, v);
    }
}

/// Device control.
pub const CTRL: usize = 0x0000;
/// Device status.
pub const STATUS: usize = 0x0008;
/// Extended device control.
pub const CTRL_EXT: usize = 0x0018;
/// MDI (PHY) control.
pub const MDIC: usize = 0x0020;
/// Interrupt mask clear.
pub const IMC: usize = 0x00d8;
/// Extended interrupt mask clear.
pub const EIMC: usize = 0x1528;
/// Receive control.
pub const RCTL: usize = 0x0100;
/// Transmit control.
pub const TCTL: usize = 0x0400;
/// Receive checksum control.
pub const RXCSUM: usize = 0x5000;
/// Multicast table array (128 registers).
pub const MTA: usize = 0x5200;
/// Multiple receive queues command.
pub const MRQC: usize = 0x5818;
/// Redirection table (32 registers, 128 one-byte entries).
pub const RETA: usize = 0x5c00;
/// RSS random key (10 registers, 40 bytes).
pub const RSSRK: usize = 0x5c80;

/// Receive address low of entry `n` (0..16).
pub const fn ral(n: usize) -> usize {
    0x5400 + 8 * n
}
/// Receive address high of entry `n`.
pub const fn rah(n: usize) -> usize {
    0x5404 + 8 * n
}

/// Base of RX queue `n`'s registers (0..16; 0..4 are also aliased at 0x2800).
pub const fn rxq(n: usize) -> usize {
    0xc000 + 0x40 * n
}
/// Base of TX queue `n`'s registers.
pub const fn txq(n: usize) -> usize {
    0xe000 + 0x40 * n
}
/// Offsets inside a queue's register block.
pub mod q {
    /// Descriptor base low.
    pub const BAL: usize = 0x00;
    /// Descriptor base high.
    pub const BAH: usize = 0x04;
    /// Ring length in bytes.
    pub const LEN: usize = 0x08;
    /// RX only: split and replication control (buffer size, descriptor type).
    pub const SRRCTL: usize = 0x0c;
    /// Head.
    pub const HEAD: usize = 0x10;
    /// Tail.
    pub const TAIL: usize = 0x18;
    /// Queue control (enable).
    pub const DCTL: usize = 0x28;
    /// RX only: packets dropped for lack of descriptors.
    pub const RQDPC: usize = 0x30;
}

/// CTRL: link reset.
pub const CTRL_LRST: u32 = 1 << 3;
/// CTRL: set link up.
pub const CTRL_SLU: u32 = 1 << 6;
/// CTRL: device reset (self-clearing).
pub const CTRL_RST: u32 = 1 << 26;
/// CTRL: PHY reset.
pub const CTRL_PHY_RST: u32 = 1 << 31;
/// CTRL_EXT: driver loaded.
pub const CTRL_EXT_DRV_LOAD: u32 = 1 << 28;
/// STATUS: link up.
pub const STATUS_LU: u32 = 1 << 1;
/// STATUS: speed field.
pub const STATUS_SPEED_SHIFT: u32 = 6;

/// MDIC: register address shift.
pub const MDIC_REG_SHIFT: u32 = 16;
/// MDIC: PHY address shift.
pub const MDIC_PHY_SHIFT: u32 = 21;
/// MDIC: write.
pub const MDIC_OP_WRITE: u32 = 1 << 26;
/// MDIC: ready.
pub const MDIC_READY: u32 = 1 << 28;
/// MDIC: error.
pub const MDIC_ERROR: u32 = 1 << 30;
/// The internal PHY's MDIO address.
pub const PHY_ADDR: u32 = 1;
/// PHY control (MII BMCR) register.
pub const PHY_BMCR: u32 = 0;
/// BMCR: 1000 Mb/s, full duplex, autonegotiation enabled, restart it.
pub const BMCR_AUTONEG_RESTART: u32 = 0x0040 | 0x0100 | 0x1000 | 0x0200;

/// RCTL: receiver enable.
pub const RCTL_EN: u32 = 1 << 1;
/// RCTL: unicast promiscuous.
pub const RCTL_UPE: u32 = 1 << 3;
/// RCTL: multicast promiscuous.
pub const RCTL_MPE: u32 = 1 << 4;
/// RCTL: accept broadcast.
pub const RCTL_BAM: u32 = 1 << 15;
/// RCTL: strip the Ethernet CRC.
pub const RCTL_SECRC: u32 = 1 << 26;

/// TCTL: transmitter enable.
pub const TCTL_EN: u32 = 1 << 1;
/// TCTL: pad short packets.
pub const TCTL_PSP: u32 = 1 << 3;
/// TCTL: collision threshold 15, collision distance 63 (full duplex).
pub const TCTL_CT_COLD: u32 = (0xf << 4) | (0x3f << 12);

/// RXDCTL/TXDCTL: queue enable.
pub const DCTL_ENABLE: u32 = 1 << 25;
/// SRRCTL: advanced one-buffer descriptors.
pub const SRRCTL_DESCTYPE_ADV_ONEBUF: u32 = 1 << 25;
/// SRRCTL: drop when the queue has no descriptors (other queues keep receiving).
pub const SRRCTL_DROP_EN: u32 = 1 << 31;
/// RAH: address valid.
pub const RAH_AV: u32 = 1 << 31;
/// RXCSUM: packet checksum disable (the RSS hash is written back instead).
pub const RXCSUM_PCSD: u32 = 1 << 13;

/// MRQC: RSS, no VMDq.
pub const MRQC_RSS: u32 = 0x2;
/// MRQC hash fields.
pub mod mrqc {
    /// IPv4 + TCP ports.
    pub const IPV4_TCP: u32 = 1 << 16;
    /// IPv4 addresses.
    pub const IPV4: u32 = 1 << 17;
    /// IPv6 (with extension headers) + TCP ports.
    pub const IPV6_TCP_EX: u32 = 1 << 18;
    /// IPv6 with extension headers.
    pub const IPV6_EX: u32 = 1 << 19;
    /// IPv6 addresses.
    pub const IPV6: u32 = 1 << 20;
    /// IPv6 + TCP ports.
    pub const IPV6_TCP: u32 = 1 << 21;
    /// IPv4 + UDP ports.
    pub const IPV4_UDP: u32 = 1 << 22;
    /// IPv6 + UDP ports.
    pub const IPV6_UDP: u32 = 1 << 23;
}

/// Advanced RX descriptor write-back: descriptor done.
pub const RXD_STAT_DD: u32 = 1 << 0;
/// Advanced RX descriptor write-back: end of packet.
pub const RXD_STAT_EOP: u32 = 1 << 1;
/// Advanced TX data descriptor: type "data", extended.
pub const TXD_DTYP_DATA_DEXT: u32 = (0x3 << 20) | (1 << 29);
/// Advanced TX data descriptor: end of packet.
pub const TXD_EOP: u32 = 1 << 24;
/// Advanced TX data descriptor: insert FCS.
pub const TXD_IFCS: u32 = 1 << 25;
/// Advanced TX data descriptor: report status.
pub const TXD_RS: u32 = 1 << 27;
/// Advanced TX descriptor: PAYLEN shift in olinfo_status.
pub const TXD_PAYLEN_SHIFT: u32 = 14;
/// Advanced TX descriptor write-back: descriptor done.
pub const TXD_STAT_DD: u32 = 1 << 0;

/// Statistics registers shown as xstats (clear on read; 64-bit ones are
/// read low then high).
pub const STATS32: &[(&str, usize)] = &[
    ("hw_rx_crc_errors", 0x4000),
    ("hw_rx_missed", 0x4010),
    ("hw_rx_good_packets", 0x4074),
    ("hw_rx_broadcast", 0x4078),
    ("hw_rx_multicast", 0x407c),
    ("hw_tx_good_packets", 0x4080),
    ("hw_rx_no_buffer", 0x40a0),
    ("hw_rx_undersize", 0x40a4),
    ("hw_rx_oversize", 0x40ac),
    ("hw_rx_total_packets", 0x40d0),
    ("hw_tx_total_packets", 0x40d4),
    ("hw_tx_multicast", 0x40f0),
    ("hw_tx_broadcast", 0x40f4),
];
/// 64-bit statistics (offset of the low half).
pub const STATS64: &[(&str, usize)] = &[("hw_rx_good_bytes", 0x4088), ("hw_tx_good_bytes", 0x4090)];
