//! `bpf(2)`, the calls the XDP loader makes: create a map, update/delete
//! one of its elements, load a program, create a link. Each takes its
//! inputs as Rust values and slices and fills the kernel's attribute union
//! (`union bpf_attr`, the leading members of each command) itself, so every
//! pointer it passes refers to a live buffer for the duration of the call.

use super::shared::Plain;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

const BPF_MAP_CREATE: libc::c_long = 0;
const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;
const BPF_MAP_DELETE_ELEM: libc::c_long = 3;
const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_LINK_CREATE: libc::c_long = 28;

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

#[repr(C)]
#[derive(Default, Clone, Copy)]
pub(crate) struct MapCreateAttr {
    pub map_type: u32,
    pub key_size: u32,
    pub value_size: u32,
    pub max_entries: u32,
    pub map_flags: u32,
    pub inner_map_fd: u32,
    pub numa_node: u32,
    pub map_name: [u8; 16],
}

#[repr(C)]
#[derive(Default, Clone, Copy)]
pub(crate) struct MapElemAttr {
    pub map_fd: u32,
    pub _pad: u32,
    pub key: u64,
    pub value: u64,
    pub flags: u64,
}

#[repr(C)]
#[derive(Default, Clone, Copy)]
pub(crate) struct ProgLoadAttr {
    pub prog_type: u32,
    pub insn_cnt: u32,
    pub insns: u64,
    pub license: u64,
    pub log_level: u32,
    pub log_size: u32,
    pub log_buf: u64,
    pub kern_version: u32,
    pub prog_flags: u32,
    pub prog_name: [u8; 16],
    pub prog_ifindex: u32,
    pub expected_attach_type: u32,
}

#[repr(C)]
#[derive(Default, Clone, Copy)]
pub(crate) struct LinkCreateAttr {
    pub prog_fd: u32,
    pub target_ifindex: u32,
    pub attach_type: u32,
    pub flags: u32,
}

// SAFETY: C structs of integers (pointers travel as u64); every bit pattern is valid.
unsafe impl Plain for MapCreateAttr {}
// SAFETY: as above.
unsafe impl Plain for MapElemAttr {}
// SAFETY: as above.
unsafe impl Plain for ProgLoadAttr {}
// SAFETY: as above.
unsafe impl Plain for LinkCreateAttr {}

/// `bpf(cmd, attr, size_of(attr))`; returns the non-negative result.
///
/// The caller fills `attr` so that every pointer in it (as u64) names a
/// buffer that lives across this call; only the functions below do.
fn sys_bpf<A: Plain>(cmd: libc::c_long, attr: &mut A) -> io::Result<libc::c_long> {
    // SAFETY: `attr` is a live, writable attribute struct of the size
    // passed (the kernel zero-extends the missing tail of the union); the
    // pointers inside it were set by this module's callers to buffers that
    // outlive the call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *mut A as *mut libc::c_void,
            std::mem::size_of::<A>() as libc::c_uint,
        )
    };
    super::check(r)
}

fn sys_bpf_fd<A: Plain>(cmd: libc::c_long, attr: &mut A) -> io::Result<OwnedFd> {
    let fd = sys_bpf(cmd, attr)?;
    // SAFETY: the command returned a fresh descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// `BPF_MAP_CREATE` with `attr` (no pointers in it).
pub(crate) fn map_create(attr: &mut MapCreateAttr) -> io::Result<OwnedFd> {
    sys_bpf_fd(BPF_MAP_CREATE, attr)
}

/// `BPF_MAP_UPDATE_ELEM` of a u32 → u32 map (`flags`: `BPF_ANY` = 0).
pub(crate) fn map_update_u32(map: BorrowedFd<'_>, key: u32, value: u32) -> io::Result<()> {
    let mut attr = MapElemAttr {
        map_fd: map.as_raw_fd() as u32,
        key: &key as *const u32 as u64,
        value: &value as *const u32 as u64,
        ..Default::default()
    };
    sys_bpf(BPF_MAP_UPDATE_ELEM, &mut attr).map(drop)
}

/// `BPF_MAP_DELETE_ELEM` of a u32 key.
pub(crate) fn map_delete_u32(map: BorrowedFd<'_>, key: u32) -> io::Result<()> {
    let mut attr = MapElemAttr {
        map_fd: map.as_raw_fd() as u32,
        key: &key as *const u32 as u64,
        ..Default::default()
    };
    sys_bpf(BPF_MAP_DELETE_ELEM, &mut attr).map(drop)
}

/// `BPF_PROG_LOAD` of `insns` with `license`, the other fields from `attr`
/// (its pointer fields are overwritten); with `log`, the verifier writes
/// its explanation there (`log_level` 1).
pub(crate) fn prog_load(
    attr: &mut ProgLoadAttr,
    insns: &[BpfInsn],
    license: &std::ffi::CStr,
    log: Option<&mut [u8]>,
) -> io::Result<OwnedFd> {
    attr.insn_cnt = insns.len() as u32;
    attr.insns = insns.as_ptr() as u64;
    attr.license = license.as_ptr() as u64;
    match log {
        Some(l) => {
            attr.log_level = 1;
            attr.log_size = l.len() as u32;
            attr.log_buf = l.as_mut_ptr() as u64;
        }
        None => {
            attr.log_level = 0;
            attr.log_size = 0;
            attr.log_buf = 0;
        }
    }
    sys_bpf_fd(BPF_PROG_LOAD, attr)
}

/// `BPF_LINK_CREATE` with `attr` (no pointers in it).
pub(crate) fn link_create(attr: &mut LinkCreateAttr) -> io::Result<OwnedFd> {
    sys_bpf_fd(BPF_LINK_CREATE, attr)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attr_layouts_match_the_kernel() {
        assert_eq!(std::mem::size_of::<BpfInsn>(), 8);
        assert_eq!(std::mem::offset_of!(ProgLoadAttr, prog_name), 48);
        assert_eq!(std::mem::offset_of!(ProgLoadAttr, expected_attach_type), 68);
        assert_eq!(std::mem::offset_of!(MapCreateAttr, map_name), 28);
        assert_eq!(std::mem::offset_of!(MapElemAttr, flags), 24);
        assert_eq!(std::mem::size_of::<LinkCreateAttr>(), 16);
    }
}
