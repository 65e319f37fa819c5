//! A small XDP loader over raw `bpf(2)`: an XSKMAP, the redirect program and
//! a BPF link that attaches it to a device.
//!
//! The program is five instructions (see [`redirect_program`]): it redirects
//! every frame to the AF_XDP socket stored in the XSKMAP at the frame's RX
//! queue index and falls back to `XDP_PASS` when that slot is empty. It is
//! attached with `BPF_LINK_CREATE`, so the attachment lives exactly as long as
//! the link's file descriptor: dropping [`XdpLink`], or the process dying
//! (even by SIGKILL), detaches it.

use super::error::{hint_attach, hint_common, XdpError};
pub use crate::sys::bpf::BpfInsn;
use crate::sys::bpf::{self as sys, LinkCreateAttr, MapCreateAttr, ProgLoadAttr};
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};

const BPF_MAP_TYPE_XSKMAP: u32 = 17;
const BPF_PROG_TYPE_XDP: u32 = 6;
const BPF_ATTACH_XDP: u32 = 37;
const BPF_PSEUDO_MAP_FD: u8 = 1;
const BPF_FUNC_REDIRECT_MAP: i32 = 51;
const XDP_FLAGS_SKB_MODE: u32 = 1 << 1;
const XDP_FLAGS_DRV_MODE: u32 = 1 << 2;
/// `BPF_F_XDP_HAS_FRAGS`: the program accepts multi-buffer frames.
pub const BPF_F_XDP_HAS_FRAGS: u32 = 1 << 5;
/// `XDP_PASS` action code.
pub const XDP_PASS: i32 = 2;

/// The redirect program for XSKMAP `map_fd` (six slots, five instructions):
///
/// ```text
/// r2 = *(u32 *)(r1 + 16)        ; ctx->rx_queue_index
/// r1 = map_fd ll                ; the XSKMAP (two slots)
/// r3 = XDP_PASS                 ; action when the slot is empty
/// call bpf_redirect_map
/// exit
/// ```
pub fn redirect_program(map_fd: RawFd) -> [BpfInsn; 6] {
    [
        BpfInsn::new(0x61, 2, 1, 16, 0), // BPF_LDX | BPF_MEM | BPF_W
        BpfInsn::new(0x18, 1, BPF_PSEUDO_MAP_FD, 0, map_fd), // BPF_LD | BPF_DW | BPF_IMM
        BpfInsn::new(0, 0, 0, 0, 0),
        BpfInsn::new(0xb7, 3, 0, 0, XDP_PASS), // BPF_ALU64 | BPF_MOV | BPF_K
        BpfInsn::new(0x85, 0, 0, 0, BPF_FUNC_REDIRECT_MAP), // BPF_JMP | BPF_CALL
        BpfInsn::new(0x95, 0, 0, 0, 0),        // BPF_JMP | BPF_EXIT
    ]
}

fn name16(name: &str) -> [u8; 16] {
    let mut out = [0u8; 16];
    for (o, b) in out.iter_mut().zip(name.bytes().take(15)) {
        *o = if b.is_ascii_alphanumeric() || b == b'_' {
            b
        } else {
            b'_'
        };
    }
    out
}

/// An XSKMAP: queue index → AF_XDP socket.
#[derive(Debug)]
pub struct XskMap {
    fd: OwnedFd,
    entries: u32,
}

impl XskMap {
    /// Create an XSKMAP with `entries` slots (one per RX queue).
    ///
    /// # Errors
    /// [`XdpError::Config`] for 0 entries, [`XdpError::Sys`] when the kernel refuses.
    pub fn new(entries: u32) -> Result<XskMap, XdpError> {
        if entries == 0 {
            return Err(XdpError::Config(
                "an XSKMAP needs at least one entry".into(),
            ));
        }
        let mut attr = MapCreateAttr {
            map_type: BPF_MAP_TYPE_XSKMAP,
            key_size: 4,
            value_size: 4,
            max_entries: entries,
            map_name: name16("xfwd_xsks"),
            ..Default::default()
        };
        let fd = sys::map_create(&mut attr)
            .map_err(|e| XdpError::sys("BPF_MAP_CREATE (XSKMAP)", e, hint_common))?;
        Ok(XskMap { fd, entries })
    }

    /// Number of slots.
    pub fn entries(&self) -> u32 {
        self.entries
    }

    /// Put the socket `xsk_fd` in slot `queue`, so frames of RX queue `queue` reach it.
    ///
    /// # Errors
    /// [`XdpError::Config`] for a queue beyond the map, [`XdpError::Sys`] otherwise.
    pub fn insert(&self, queue: u32, xsk_fd: RawFd) -> Result<(), XdpError> {
        self.check(queue)?;
        sys::map_update_u32(self.fd.as_fd(), queue, xsk_fd as u32)
            .map_err(|e| XdpError::sys(format!("XSKMAP insert queue {queue}"), e, hint_common))
    }

    /// Empty slot `queue` (releases the map's reference to the socket).
    ///
    /// # Errors
    /// [`XdpError::Sys`] with ENOENT when the slot was empty.
    pub fn remove(&self, queue: u32) -> Result<(), XdpError> {
        self.check(queue)?;
        sys::map_delete_u32(self.fd.as_fd(), queue)
            .map_err(|e| XdpError::sys(format!("XSKMAP remove queue {queue}"), e, hint_common))
    }

    fn check(&self, queue: u32) -> Result<(), XdpError> {
        if queue >= self.entries {
            return Err(XdpError::Config(format!(
                "queue {queue} is beyond the XSKMAP's {} entries",
                self.entries
            )));
        }
        Ok(())
    }

    /// The map's file descriptor.
    pub fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// A loaded XDP program.
#[derive(Debug)]
pub struct XdpProgram {
    fd: OwnedFd,
}

impl XdpProgram {
    /// Load the redirect-to-XSKMAP program for `map`.
    ///
    /// # Errors
    /// [`XdpError::Verifier`] with the verifier log when the kernel refuses it.
    pub fn redirect(map: &XskMap) -> Result<XdpProgram, XdpError> {
        XdpProgram::load("xfwd_redirect", &redirect_program(map.as_raw_fd()), 0)
    }

    /// Load any XDP program (`prog_flags` e.g. [`BPF_F_XDP_HAS_FRAGS`]).
    ///
    /// # Errors
    /// [`XdpError::Config`] for an empty program, [`XdpError::Verifier`] with
    /// the verifier log when the kernel refuses it.
    pub fn load(name: &str, insns: &[BpfInsn], prog_flags: u32) -> Result<XdpProgram, XdpError> {
        if insns.is_empty() {
            return Err(XdpError::Config("an XDP program needs instructions".into()));
        }
        let license = c"GPL";
        let mut log = vec![0u8; 64 * 1024];
        let mut attr = ProgLoadAttr {
            prog_type: BPF_PROG_TYPE_XDP,
            prog_flags,
            prog_name: name16(name),
            expected_attach_type: BPF_ATTACH_XDP,
            ..Default::default()
        };
        // Load without a log first (cheap); on failure load again with the log
        // enabled so the error carries the verifier's explanation.
        match sys::prog_load(&mut attr, insns, license, None) {
            Ok(fd) => Ok(XdpProgram { fd }),
            Err(first) => match sys::prog_load(&mut attr, insns, license, Some(&mut log)) {
                Ok(fd) => Ok(XdpProgram { fd }),
                Err(e) => {
                    let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
                    let text = String::from_utf8_lossy(&log[..end]).trim_end().to_string();
                    let source = if e.raw_os_error() == Some(libc::ENOSPC) {
                        first
                    } else {
                        e
                    };
                    Err(XdpError::Verifier { source, log: text })
                }
            },
        }
    }

    /// The program's file descriptor.
    pub fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// Where the XDP program runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XdpMode {
    /// Native, in the driver (`XDP_FLAGS_DRV_MODE`).
    Drv,
    /// Generic, on the skb (`XDP_FLAGS_SKB_MODE`); works on every device.
    Skb,
}

impl XdpMode {
    fn flags(self) -> u32 {
        match self {
            XdpMode::Drv => XDP_FLAGS_DRV_MODE,
            XdpMode::Skb => XDP_FLAGS_SKB_MODE,
        }
    }
}

/// A program attached to a device by a BPF link. Dropping it (or the process
/// exiting for any reason) detaches the program.
#[derive(Debug)]
pub struct XdpLink {
    fd: OwnedFd,
    ifindex: u32,
    mode: XdpMode,
}

impl XdpLink {
    /// Attach `prog` to device `ifindex` in `mode`.
    ///
    /// # Errors
    /// [`XdpError::Sys`] with a hint (ERANGE: MTU too big for native XDP on
    /// veth; ENOSPC: queue count mismatch; EBUSY: a program is already there).
    pub fn attach(prog: &XdpProgram, ifindex: u32, mode: XdpMode) -> Result<XdpLink, XdpError> {
        let mut attr = LinkCreateAttr {
            prog_fd: prog.as_raw_fd() as u32,
            target_ifindex: ifindex,
            attach_type: BPF_ATTACH_XDP,
            flags: mode.flags(),
        };
        let fd = sys::link_create(&mut attr).map_err(|e| {
            XdpError::sys(
                format!("attach XDP program to ifindex {ifindex} in {mode:?} mode"),
                e,
                hint_attach,
            )
        })?;
        Ok(XdpLink { fd, ifindex, mode })
    }

    /// The device the program is attached to.
    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }

    /// The attach mode.
    pub fn mode(&self) -> XdpMode {
        self.mode
    }

    /// The link's file descriptor.
    pub fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// The usual bundle: an XSKMAP, the redirect program over it, and its link on one device.
/// Field order is drop order: the link detaches before the program and map close.
#[derive(Debug)]
pub struct XdpRedirect {
    link: XdpLink,
    prog: XdpProgram,
    map: XskMap,
}

impl XdpRedirect {
    /// Create a map with `queues` slots, load the redirect program and attach it.
    ///
    /// # Errors
    /// Any error of [`XskMap::new`], [`XdpProgram::redirect`], [`XdpLink::attach`].
    pub fn attach(ifindex: u32, queues: u32, mode: XdpMode) -> Result<XdpRedirect, XdpError> {
        let map = XskMap::new(queues)?;
        let prog = XdpProgram::redirect(&map)?;
        let link = XdpLink::attach(&prog, ifindex, mode)?;
        Ok(XdpRedirect { link, prog, map })
    }

    /// The XSKMAP: insert each queue's socket here.
    pub fn map(&self) -> &XskMap {
        &self.map
    }

    /// The loaded program.
    pub fn program(&self) -> &XdpProgram {
        &self.prog
    }

    /// The attachment.
    pub fn link(&self) -> &XdpLink {
        &self.link
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn program_encoding_matches_the_notes() {
        let p = redirect_program(7);
        assert_eq!(std::mem::size_of::<BpfInsn>(), 8);
        assert_eq!((p[0].code, p[0].regs, p[0].off), (0x61, 0x12, 16));
        assert_eq!((p[1].code, p[1].regs, p[1].imm), (0x18, 0x11, 7));
        assert_eq!(p[2], BpfInsn::default());
        assert_eq!((p[3].code, p[3].regs, p[3].imm), (0xb7, 3, XDP_PASS));
        assert_eq!((p[4].code, p[4].imm), (0x85, 51));
        assert_eq!(p[5].code, 0x95);
    }

    #[test]
    fn names_are_sanitised() {
        assert_eq!(&name16("a-b")[..4], b"a_b\0");
    }

    #[test]
    fn empty_inputs_are_config_errors() {
        assert!(matches!(XskMap::new(0), Err(XdpError::Config(_))));
        assert!(matches!(
            XdpProgram::load("x", &[], 0),
            Err(XdpError::Config(_))
        ));
    }
}
