//! The shared memory of one memif connection ([`Conn`]) and the client's
//! own memory for it ([`build_client`]): one region with every ring, then
//! (copy mode) every buffer, as xfwd external memory registered in the
//! pool's `Registry`.

use super::client::{ClientBuild, Out};
use super::proto;
use super::ring::{Desc, Ring};
use super::{Role, Shared};
use crate::sys::{EventFd, Shared as Window};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use xfwd_mempool::{Backing, ExtMem, ExtMemConfig, IovaMode, Mbuf, RegionId, Registry};

/// One ring of a connection as a queue uses it.
#[derive(Debug)]
pub(crate) struct RingSide {
    pub ring: Ring,
    /// Interrupt line (the client created it; both sides share it).
    pub efd: EventFd,
    /// Client, copy mode: offset in region 0 of slot 0's buffer.
    pub buf0: u32,
    /// Client, zero copy, S2C: the mbufs offered at connect, by slot
    /// (the RX queue takes them over when it picks the connection up).
    pub offered: Mutex<Vec<Option<Mbuf>>>,
}

/// Client memory registered in the pool's registry; unregistered when the
/// connection is gone.
#[derive(Debug)]
pub(super) struct OwnRegion {
    pub mem: Arc<ExtMem>,
    registry: Registry,
    id: RegionId,
}

impl Drop for OwnRegion {
    fn drop(&mut self) {
        if let Err(e) = self.registry.unregister(self.id) {
            log::error!("memif: unregister region {}: {e}", self.id);
        }
    }
}

/// The shared memory of one connection. Queues hold it through an `Arc`,
/// so its mappings live until the last queue lets go of it.
#[derive(Debug)]
pub(crate) struct Conn {
    /// Regions by index (windows over the peer's mapped files, or over our
    /// own memory; each keeps what it views alive).
    pub regions: Vec<Window>,
    /// Rings of our RX queues (server: C2S, client: S2C).
    pub rx: Vec<RingSide>,
    /// Rings of our TX queues (server: S2C, client: C2S).
    pub tx: Vec<RingSide>,
    /// Packet buffer size (client copy mode).
    pub bsize: u32,
    /// Peer name for logs.
    pub peer: String,
    /// Client: our region, unregistered when the connection is gone.
    pub(super) own: Option<OwnRegion>,
}

impl Conn {
    /// Everything our TX rings hold has been taken by the peer.
    pub fn tx_drained(&self, role: Role) -> bool {
        self.tx.iter().all(|s| {
            let head = s.ring.head(Ordering::Acquire);
            let tail = s.ring.tail(Ordering::Acquire);
            match role {
                // C2S: we fill at head, the server consumes up to tail.
                Role::Client => head == tail,
                // S2C: we fill at tail; the client has taken (and offered
                // back) every buffer.
                Role::Server => u32::from(head.wrapping_sub(tail)) == s.ring.size(),
            }
        })
    }
}

/// Client memory for one connection: one region with every ring, then
/// every buffer (`C2S` rings' buffers first), as xfwd external memory.
pub(super) fn build_client(shared: &Shared, log2: u8) -> Result<ClientBuild, String> {
    let cfg = &shared.cfg;
    let slots = 1usize << log2;
    let nrings = usize::from(shared.txq) + usize::from(shared.rxq);
    let rb = proto::ring_bytes(log2);
    let buf_start = (nrings * rb).next_multiple_of(64);
    // Zero copy: region 0 holds only the rings; buffers are mbufs.
    let total = if cfg.zero_copy {
        buf_start
    } else {
        buf_start + nrings * slots * cfg.bsize as usize
    };
    if total > u32::MAX as usize {
        return Err(format!(
            "{total} bytes of rings and buffers exceed the protocol's 4 GiB region offsets: lower rsize or bsize"
        ));
    }
    let ps = shared.pool.mem().page_size();
    let mem = ExtMem::alloc(&ExtMemConfig {
        len: total,
        page_size: ps,
        backing: Backing::Memfd,
        iova_mode: IovaMode::Va,
        allow_4k: true,
    })
    .map_err(|e| format!("cannot allocate the memif region ({total} bytes of {ps} pages): {e}"))?;
    let mem = Arc::new(mem);
    let registry = shared.pool.registry().clone();
    let id = registry
        .register_mem(&mem)
        .map_err(|e| format!("cannot register the memif region: {e}"))?;
    let own = OwnRegion {
        mem: mem.clone(),
        registry,
        id,
    };
    let shm = Window::over_extmem(mem);
    let mut regions = vec![shm.clone()];
    if cfg.zero_copy {
        regions.push(Window::over_extmem(shared.pool.mem().clone()));
    }
    let mut mk = |i: usize| -> Result<RingSide, String> {
        let ring = Ring::at(&shm, (i * rb) as u32, log2).expect("laid out inside the region");
        let buf0 = (buf_start + i * slots * cfg.bsize as usize) as u32;
        ring.set_cookie(proto::COOKIE);
        ring.set_flags(0);
        ring.set_head(0, Ordering::Relaxed);
        ring.set_tail(0, Ordering::Relaxed);
        for s in 0..slots {
            ring.set_desc(
                s as u16,
                if cfg.zero_copy {
                    Desc::default()
                } else {
                    Desc {
                        flags: 0,
                        region: 0,
                        length: cfg.bsize,
                        offset: buf0 + (s as u32) * cfg.bsize,
                        metadata: 0,
                    }
                },
            );
        }
        let efd = EventFd::new(true).map_err(|e| format!("eventfd: {e}"))?;
        Ok(RingSide {
            ring,
            efd,
            buf0,
            offered: Mutex::new(Vec::new()),
        })
    };
    let tx = (0..usize::from(shared.txq))
        .map(&mut mk)
        .collect::<Result<Vec<_>, _>>()?;
    let rx = (0..usize::from(shared.rxq))
        .map(|i| mk(usize::from(shared.txq) + i))
        .collect::<Result<Vec<_>, _>>()?;
    let mut queue = std::collections::VecDeque::new();
    queue.push_back(Out::Init);
    queue.push_back(Out::Region(0));
    if cfg.zero_copy {
        queue.push_back(Out::Region(1));
    }
    for i in 0..shared.txq {
        queue.push_back(Out::Ring {
            c2s: true,
            index: i,
        });
    }
    for i in 0..shared.rxq {
        queue.push_back(Out::Ring {
            c2s: false,
            index: i,
        });
    }
    queue.push_back(Out::Connect);
    Ok(ClientBuild {
        conn: Conn {
            regions,
            rx,
            tx,
            bsize: cfg.bsize,
            peer: String::new(),
            own: Some(own),
        },
        log2,
        queue,
    })
}
