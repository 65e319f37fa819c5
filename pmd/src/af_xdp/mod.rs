//! Kernel-facing AF_XDP building blocks: the XDP redirect program and its
//! loader ([`bpf`]), the UMEM over caller-owned memory ([`umem`]), the rings
//! ([`ring`]) and the socket ([`xsk`]). The port built on them owns one
//! [`XskSocket`] per (device, queue), all bound over one shared [`Umem`].
//!
//! Typical setup, inside the device's network namespace:
//!
//! ```text
//! let umem = unsafe { Umem::new(UmemConfig { base, len, chunk_size: 2048, headroom: 0 }) }?;
//! let xdp = XdpRedirect::attach(netdev::ifindex("veth0")?, queues, XdpMode::Drv)?;
//! let mut xsk = XskSocket::bind(&umem, ifindex, 0, &XskConfig::default())?;
//! xdp.map().insert(0, xsk.as_raw_fd())?;
//! xsk.rx_mut().fill.produce(&chunk_offsets);        // then rx.consume / tx.produce / kick
//! ```
//!
//! Teardown: remove the XSKMAP entry, drop the sockets, then drop the
//! [`XdpRedirect`] (the link detaches the program), then free the memory.

#[forbid(unsafe_code)]
mod args;
#[forbid(unsafe_code)]
pub mod bpf;
#[forbid(unsafe_code)]
pub mod error;
#[forbid(unsafe_code)]
pub mod port;
#[forbid(unsafe_code)]
pub mod ring;
#[forbid(unsafe_code)]
mod rx;
#[forbid(unsafe_code)]
mod tx;
// The raw-area constructor `Umem::new` and frame accessors are `unsafe fn`s.
#[allow(unsafe_code)]
pub mod umem;
#[forbid(unsafe_code)]
pub mod xsk;

pub use bpf::{BpfInsn, XdpLink, XdpMode, XdpProgram, XdpRedirect, XskMap};
pub use error::XdpError;
pub use port::AfXdpPort;
pub use ring::{CompRing, Consume, FillRing, Produce, Ring, RingSize, RxRing, TxRing, XdpDesc};
pub use umem::{
    desc_base, desc_data, desc_encode, desc_offset, Umem, UmemConfig, XDP_PACKET_HEADROOM,
};
pub use xsk::{BindMode, BusyPoll, XskConfig, XskInfo, XskRx, XskSocket, XskStats, XskTx};
