//! Shared pieces of the AF_XDP kernel tests: the pool-like UMEM layout and
//! small constructors.

use super::hugepages::HugeArea;
use std::sync::Arc;
use std::time::Duration;
use xfwd_mempool::caps;
use xfwd_pmd::af_xdp::{Umem, UmemConfig, XdpDesc, XskConfig};

/// Pool-like layout: objects 2304 B apart = [128 B mbuf header][128 B headroom][2048 B data].
/// The UMEM chunk starts after the header.
pub const OBJ: u64 = 2304;
/// mbuf header bytes in front of each UMEM chunk.
pub const HDR: u64 = 128;
/// UMEM chunk size.
pub const CHUNK: u32 = 2048;
/// UMEM (frame) headroom.
pub const HEADROOM: u32 = 128;
/// Bound on the wait for a detach (see `Netns::xdp_detached_within`).
pub const DETACH: Duration = Duration::from_secs(2);

/// UMEM offset of chunk `i`.
pub fn chunk(i: u64) -> u64 {
    i * OBJ + HDR
}

/// Length of test frame `seq` (60..1500 bytes).
pub fn frame_len(seq: u32) -> usize {
    60 + (seq as usize * 97) % 1441
}

/// Root and `ip` available (else skip / fail in CI).
pub fn env_ok(what: &str) -> bool {
    caps::require_root(what) && caps::require_tool("ip", what)
}

/// One 2 MiB hugepage area (else skip / fail in CI).
pub fn huge(what: &str) -> Option<HugeArea> {
    match HugeArea::new(1) {
        Ok(a) => Some(a),
        Err(e) => {
            caps::require(false, what, &e);
            None
        }
    }
}

/// A UMEM over `base..base+len` with the pool-like geometry. The caller must
/// keep the area mapped until every socket over it is dropped (declare the
/// area before the sockets).
pub fn umem_over(base: usize, len: usize) -> Arc<Umem> {
    let cfg = UmemConfig {
        base,
        len,
        chunk_size: CHUNK,
        headroom: HEADROOM,
    };
    // SAFETY: the caller keeps the area mapped until every socket is dropped
    // (the area is declared before, so dropped after, the sockets in each test).
    unsafe { Umem::new(cfg) }.expect("valid UMEM geometry")
}

/// An all-zero descriptor (array initialiser).
pub fn zero_desc() -> XdpDesc {
    XdpDesc {
        addr: 0,
        len: 0,
        options: 0,
    }
}

/// Socket config with 1024-entry rings (2048 fill).
pub fn small_cfg() -> XskConfig {
    XskConfig {
        rx_size: 1024,
        tx_size: 1024,
        fill_size: 2048,
        comp_size: 1024,
        ..XskConfig::default()
    }
}
