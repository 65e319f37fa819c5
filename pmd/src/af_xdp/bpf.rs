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
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

const BPF_MAP_CREATE: libc::c_long = 0;
const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;
const BPF_MAP_DELETE_ELEM: libc::c_long = 3;
const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_LINK_CREATE: libc::c_long = 28;

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

/// One eBPF instruction (`struct bpf_insn`).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BpfInsn {
    /// Opcode.
    pub code: u8,
    /// `dst_reg` in the low nibble, `src_reg` in the high nibble.
    pub regs: u8,
    /// Signed offset.
    pub off: i16,
    /// Signed immediate.
    pub imm: i32,
}

impl BpfInsn {
    /// An instruction from its fields.
    pub const fn new(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> BpfInsn {
        BpfInsn {
            code,
            regs: (dst & 0xf) | (src << 4),
            off,
            imm,
        }
    }
}

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

/// `bpf(cmd, attr, size_of(attr))`; returns the non-negative result.
fn sys_bpf<A>(cmd: libc::c_long, attr: &mut A) -> io::Result<libc::c_long> {
    // SAFETY: `attr` is a live, fully initialised #[repr(C)] bpf_attr prefix of
    // the given size; the kernel zero-extends the missing tail. Pointers inside
    // it refer to buffers that outlive this call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *mut A as *mut libc::c_void,
            std::mem::size_of::<A>() as libc::c_uint,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// `bpf()` that returns a new file descriptor.
fn sys_bpf_fd<A>(cmd: libc::c_long, attr: &mut A) -> io::Result<OwnedFd> {
    let fd = sys_bpf(cmd, attr)?;
    // SAFETY: the command returned a fresh descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

#[repr(C)]
#[derive(Default)]
struct MapCreateAttr {
    map_type: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    map_flags: u32,
    inner_map_fd: u32,
    numa_node: u32,
    map_name: [u8; 16],
}

#[repr(C)]
#[derive(Default)]
struct MapElemAttr {
    map_fd: u32,
    _pad: u32,
    key: u64,
    value: u64,
    flags: u64,
}

#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

#[repr(C)]
#[derive(Default)]
struct LinkCreateAttr {
    prog_fd: u32,
    target_ifindex: u32,
    attach_type: u32,
    flags: u32,
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
        let fd = sys_bpf_fd(BPF_MAP_CREATE, &mut attr)
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
        let key = queue;
        let value = xsk_fd as u32;
        let mut attr = MapElemAttr {
            map_fd: self.fd.as_raw_fd() as u32,
            key: &key as *const u32 as u64,
            value: &value as *const u32 as u64,
            ..Default::default()
        };
        sys_bpf(BPF_MAP_UPDATE_ELEM, &mut attr)
            .map(drop)
            .map_err(|e| XdpError::sys(format!("XSKMAP insert queue {queue}"), e, hint_common))
    }

    /// Empty slot `queue` (releases the map's reference to the socket).
    ///
    /// # Errors
    /// [`XdpError::Sys`] with ENOENT when the slot was empty.
    pub fn remove(&self, queue: u32) -> Result<(), XdpError> {
        self.check(queue)?;
        let key = queue;
        let mut attr = MapElemAttr {
            map_fd: self.fd.as_raw_fd() as u32,
            key: &key as *const u32 as u64,
            ..Default::default()
        };
        sys_bpf(BPF_MAP_DELETE_ELEM, &mut attr)
            .map(drop)
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
            insn_cnt: insns.len() as u32,
            insns: insns.as_ptr() as u64,
            license: license.as_ptr() as u64,
            prog_flags,
            prog_name: name16(name),
            expected_attach_type: BPF_ATTACH_XDP,
            ..Default::default()
        };
        // Load without a log first (cheap); on failure load again with the log
        // enabled so the error carries the verifier's explanation.
        match sys_bpf_fd(BPF_PROG_LOAD, &mut attr) {
            Ok(fd) => Ok(XdpProgram { fd }),
            Err(first) => {
                attr.log_level = 1;
                attr.log_size = log.len() as u32;
                attr.log_buf = log.as_mut_ptr() as u64;
                match sys_bpf_fd(BPF_PROG_LOAD, &mut attr) {
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
                }
            }
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
        let fd = sys_bpf_fd(BPF_LINK_CREATE, &mut attr).map_err(|e| {
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
    fn attr_layouts_match_the_kernel() {
        assert_eq!(std::mem::offset_of!(ProgLoadAttr, prog_name), 48);
        assert_eq!(std::mem::offset_of!(ProgLoadAttr, expected_attach_type), 68);
        assert_eq!(std::mem::offset_of!(MapCreateAttr, map_name), 28);
        assert_eq!(std::mem::offset_of!(MapElemAttr, flags), 24);
        assert_eq!(std::mem::size_of::<LinkCreateAttr>(), 16);
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
