//! The routing state the lcores read: LPM tables (IPv4, IPv6) or
//! exact-match tables (5-tuple), next hops, the ports' source MACs; and how
//! it is published (a generation-checked snapshot swap, RCU style).
//!
//! A published [`Tables`] is never modified: an update clones the current
//! one, edits the clone and publishes it under a new generation. An lcore
//! reads the generation (one relaxed-acquire load) once per polling round
//! and, when it moved, takes the new snapshot (a lock taken only then), so
//! every packet is looked up in exactly one complete table. Old snapshots
//! are freed by the control thread, never by an lcore.

use super::em::{Em, EmError, Key4, Key6};
use super::lpm::{Lpm4, Lpm6, LpmError};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Which table the lcores look packets up in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Lookup {
    /// Longest-prefix match on the destination address.
    Lpm,
    /// Exact match on the 5-tuple.
    Em,
}

/// Where a matching packet goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct NextHop {
    /// TX port id.
    pub port: u16,
    /// Destination MAC written into the frame.
    pub mac: [u8; 6],
}

/// An IP prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Prefix {
    /// Address (host bits zero).
    pub addr: IpAddr,
    /// Prefix length.
    pub len: u8,
}

impl std::fmt::Display for Prefix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

impl Prefix {
    /// Parse `ADDR/LEN` (a bare address is a host route); host bits set
    /// beyond the length are refused.
    ///
    /// # Errors
    /// A sentence saying what is wrong.
    pub fn parse(s: &str) -> Result<Prefix, String> {
        let s = s.trim();
        let (a, l) = s.split_once('/').unwrap_or((s, ""));
        let addr: IpAddr = a
            .parse()
            .map_err(|_| format!("`{a}` is not an IPv4 or IPv6 address"))?;
        let width = if addr.is_ipv4() { 32 } else { 128 };
        let len: u8 = if l.is_empty() {
            width
        } else {
            match l.parse::<u8>() {
                Ok(n) if n <= width => n,
                _ => return Err(format!("prefix length `{l}`: 0 ..= {width} expected")),
            }
        };
        let bits = addr_bits(addr);
        let masked = super::lpm::mask(bits, len, u32::from(width));
        if masked != bits {
            return Err(format!(
                "host bits set beyond /{len} (the network is {}/{len})",
                bits_addr(masked, addr.is_ipv4())
            ));
        }
        Ok(Prefix { addr, len })
    }
}

/// An address as the low bits of a u128.
pub fn addr_bits(a: IpAddr) -> u128 {
    match a {
        IpAddr::V4(v) => u32::from(v).into(),
        IpAddr::V6(v) => u128::from(v),
    }
}

fn bits_addr(b: u128, v4: bool) -> IpAddr {
    if v4 {
        IpAddr::V4((b as u32).into())
    } else {
        IpAddr::V6(b.into())
    }
}

/// An exact-match flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Flow {
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// Source port (0 for protocols without ports).
    pub sport: u16,
    /// Destination port.
    pub dport: u16,
    /// IP protocol number.
    pub proto: u8,
}

impl std::fmt::Display for Flow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {} {} {} {}",
            self.src, self.dst, self.sport, self.dport, self.proto
        )
    }
}

/// Why a table update was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TableError {
    /// LPM refused.
    #[error("{0}")]
    Lpm(#[from] LpmError),
    /// EM refused.
    #[error("{0}")]
    Em(#[from] EmError),
    /// The next hop names a port the router has no TX queue on.
    #[error("port {0} is not a forwarding port")]
    Port(u16),
    /// A delete of something absent.
    #[error("no such entry: {0}")]
    Absent(String),
    /// Wrong kind of entry for the lookup.
    #[error("{0}")]
    Kind(String),
}

/// One complete, immutable routing snapshot.
#[derive(Debug, Clone)]
pub struct Tables {
    /// Lookup kind.
    pub lookup: Lookup,
    /// IPv4 LPM (LPM lookup only).
    pub v4: Option<Lpm4>,
    /// IPv6 LPM (LPM lookup only).
    pub v6: Option<Lpm6>,
    /// IPv4 exact match (EM lookup only).
    pub em4: Option<Em<Key4>>,
    /// IPv6 exact match (EM lookup only).
    pub em6: Option<Em<Key6>>,
    /// Next hops by id (what the tables hold).
    pub hops: Vec<NextHop>,
    /// Source MAC per port id (`None`: not a forwarding port).
    pub port_macs: Vec<Option<[u8; 6]>>,
    /// Next-hop MAC per port id (`--eth-dest`), for routes added at run time.
    pub port_next_hops: Vec<Option<[u8; 6]>>,
    /// The neighbours (`[[neighbor]]`, `--neighbor`), for `via` at run time.
    pub neighbors: Vec<(IpAddr, NextHop)>,
    /// Verify IPv4 header checksums.
    pub check_checksum: bool,
    /// Generation this snapshot was published under.
    pub generation: u64,
}

/// Groups of the IPv4 table: enough for ~1 M /25../32 routes under
/// distinct /24s (1 KiB each, allocated only when used).
pub const V4_GROUPS: u32 = 1 << 20;
/// Groups of the IPv6 table.
pub const V6_GROUPS: u32 = 1 << 20;

impl Tables {
    /// Empty tables for `lookup`, sized for `em_cap` flows in EM mode.
    pub fn new(lookup: Lookup, port_macs: Vec<Option<[u8; 6]>>, em_cap: usize) -> Tables {
        let lpm = lookup == Lookup::Lpm;
        Tables {
            lookup,
            v4: lpm.then(|| Lpm4::new(V4_GROUPS)),
            v6: lpm.then(|| Lpm6::new(V6_GROUPS)),
            em4: (!lpm).then(|| Em::new(em_cap)),
            em6: (!lpm).then(|| Em::new(em_cap)),
            hops: Vec::new(),
            port_macs,
            port_next_hops: Vec::new(),
            neighbors: Vec::new(),
            check_checksum: false,
            generation: 0,
        }
    }

    /// The id of `hop` (added when new).
    ///
    /// # Errors
    /// [`TableError::Port`].
    pub fn hop_id(&mut self, hop: NextHop) -> Result<u32, TableError> {
        if !self
            .port_macs
            .get(usize::from(hop.port))
            .is_some_and(Option::is_some)
        {
            return Err(TableError::Port(hop.port));
        }
        if let Some(i) = self.hops.iter().position(|h| *h == hop) {
            return Ok(i as u32);
        }
        self.hops.push(hop);
        Ok(self.hops.len() as u32 - 1)
    }

    /// Add or replace a route (LPM).
    ///
    /// # Errors
    /// [`TableError`].
    pub fn add_route(&mut self, p: Prefix, hop: NextHop) -> Result<(), TableError> {
        let id = self.hop_id(hop)?;
        match (p.addr, &mut self.v4, &mut self.v6) {
            (IpAddr::V4(a), Some(t), _) => Ok(t.add(a.into(), p.len, id)?),
            (IpAddr::V6(a), _, Some(t)) => Ok(t.add(a.into(), p.len, id)?),
            _ => Err(TableError::Kind(format!(
                "route {p}: the lookup is em (use flows)"
            ))),
        }
    }

    /// Delete a route (LPM).
    ///
    /// # Errors
    /// [`TableError::Absent`] when not held.
    pub fn delete_route(&mut self, p: Prefix) -> Result<(), TableError> {
        let done = match (p.addr, &mut self.v4, &mut self.v6) {
            (IpAddr::V4(a), Some(t), _) => t.delete(a.into(), p.len),
            (IpAddr::V6(a), _, Some(t)) => t.delete(a.into(), p.len),
            _ => false,
        };
        if done {
            Ok(())
        } else {
            Err(TableError::Absent(format!("route {p}")))
        }
    }

    /// Add or replace a flow (EM).
    ///
    /// # Errors
    /// [`TableError`].
    pub fn add_flow(&mut self, f: Flow, hop: NextHop) -> Result<(), TableError> {
        let id = self.hop_id(hop)?;
        match (f.src, f.dst, &mut self.em4, &mut self.em6) {
            (IpAddr::V4(s), IpAddr::V4(d), Some(t), _) => {
                Ok(t.insert(Key4::new(s.into(), d.into(), f.sport, f.dport, f.proto), id)?)
            }
            (IpAddr::V6(s), IpAddr::V6(d), _, Some(t)) => {
                Ok(t.insert(Key6::new(s.into(), d.into(), f.sport, f.dport, f.proto), id)?)
            }
            (s, d, None, None) => Err(TableError::Kind(format!(
                "flow {s} → {d}: the lookup is lpm (use routes)"
            ))),
            (s, d, ..) => Err(TableError::Kind(format!(
                "flow {s} → {d}: both addresses IPv4 or both IPv6"
            ))),
        }
    }

    /// Delete a flow (EM).
    ///
    /// # Errors
    /// [`TableError::Absent`] when not held.
    pub fn delete_flow(&mut self, f: Flow) -> Result<(), TableError> {
        let done = match (f.src, f.dst, &mut self.em4, &mut self.em6) {
            (IpAddr::V4(s), IpAddr::V4(d), Some(t), _) => {
                t.remove(&Key4::new(s.into(), d.into(), f.sport, f.dport, f.proto))
            }
            (IpAddr::V6(s), IpAddr::V6(d), _, Some(t)) => {
                t.remove(&Key6::new(s.into(), d.into(), f.sport, f.dport, f.proto))
            }
            _ => false,
        };
        if done {
            Ok(())
        } else {
            Err(TableError::Absent(format!("flow {f}")))
        }
    }

    /// Routes (or flows) held.
    pub fn len(&self) -> usize {
        self.v4.as_ref().map_or(0, |t| t.trie().len())
            + self.v6.as_ref().map_or(0, |t| t.trie().len())
            + self.em4.as_ref().map_or(0, Em::len)
            + self.em6.as_ref().map_or(0, Em::len)
    }

    /// True when there is no route.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// One line for the plan.
    pub fn describe(&self) -> String {
        let n = |t: Option<usize>| t.unwrap_or(0);
        let mb = |b: usize| b as f64 / (1 << 20) as f64;
        match self.lookup {
            Lookup::Lpm => format!(
                "lookup lpm, {} IPv4 routes ({:.1} MiB of tables), {} IPv6 routes ({:.1} MiB), {} next hops, IPv4 checksum {}",
                n(self.v4.as_ref().map(|t| t.trie().len())),
                mb(self.v4.as_ref().map_or(0, |t| t.trie().table_bytes())),
                n(self.v6.as_ref().map(|t| t.trie().len())),
                mb(self.v6.as_ref().map_or(0, |t| t.trie().table_bytes())),
                self.hops.len(),
                if self.check_checksum { "verified" } else { "not verified" }
            ),
            Lookup::Em => format!(
                "lookup em, {} IPv4 flows, {} IPv6 flows, {} next hops, IPv4 checksum {}",
                n(self.em4.as_ref().map(Em::len)),
                n(self.em6.as_ref().map(Em::len)),
                self.hops.len(),
                if self.check_checksum { "verified" } else { "not verified" }
            ),
        }
    }
}

/// The published snapshot and its generation (shared by the control thread
/// and every lcore).
#[derive(Debug)]
pub struct Shared {
    generation: AtomicU64,
    current: Mutex<Arc<Tables>>,
    retired: Mutex<Vec<Arc<Tables>>>,
}

impl Shared {
    /// Publish the first snapshot.
    pub fn new(t: Tables) -> Arc<Shared> {
        Arc::new(Shared {
            generation: AtomicU64::new(t.generation),
            current: Mutex::new(Arc::new(t)),
            retired: Mutex::new(Vec::new()),
        })
    }

    /// The current snapshot.
    pub fn current(&self) -> Arc<Tables> {
        self.current
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// The generation published last.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// A reader for one lcore.
    pub fn reader(self: &Arc<Shared>) -> Reader {
        let tables = self.current();
        Reader {
            shared: self.clone(),
            seen: tables.generation,
            tables,
        }
    }

    /// Clone the current snapshot, apply `f` to the clone and publish it
    /// (nothing is published when `f` fails). Updates are serialized.
    ///
    /// # Errors
    /// What `f` returned.
    pub fn update<R>(
        &self,
        f: impl FnOnce(&mut Tables) -> Result<R, TableError>,
    ) -> Result<R, TableError> {
        let mut cur = self
            .current
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut next = Tables::clone(&cur);
        let r = f(&mut next)?;
        next.generation = cur.generation + 1;
        let g = next.generation;
        let old = std::mem::replace(&mut *cur, Arc::new(next));
        self.generation.store(g, Ordering::Release);
        drop(cur);
        self.retire(Some(old));
        Ok(r)
    }

    /// Free the snapshots no lcore holds any more (and keep `old` until then).
    pub fn retire(&self, old: Option<Arc<Tables>>) {
        let mut r = self
            .retired
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        r.extend(old);
        r.retain(|t| Arc::strong_count(t) > 1);
    }
}

/// An lcore's view: the snapshot it looks up in.
#[derive(Debug)]
pub struct Reader {
    shared: Arc<Shared>,
    seen: u64,
    tables: Arc<Tables>,
}

impl Reader {
    /// Take the newest snapshot if one was published (call once per
    /// polling round, between bursts).
    #[inline]
    pub fn refresh(&mut self) {
        if self.shared.generation.load(Ordering::Acquire) != self.seen {
            let t = self.shared.current();
            self.seen = t.generation;
            // The old snapshot's last reference may be this one: the
            // control thread frees it (`Shared::retire`), not this lcore.
            self.tables = t;
        }
    }

    /// The snapshot in use.
    #[inline]
    pub fn tables(&self) -> &Tables {
        &self.tables
    }
}
