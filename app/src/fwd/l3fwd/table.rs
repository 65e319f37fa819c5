//! The routing state the lcores read: LPM tables (IPv4, IPv6) or
//! exact-match tables (5-tuple), next hops, the ports' source MACs; and how
//! it is published (a generation-checked snapshot swap, RCU style).
//!
//! A published [`Tables`] is never modified while an lcore can read it: an
//! update edits a copy (the spare snapshot, brought up to date, or a fresh
//! clone; see [`Shared`]) and publishes it under a new generation. An lcore
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

/// A change that was applied to the current snapshot and still has to be
/// replayed on the spare one.
type Change = Box<dyn Fn(&mut Tables) -> Result<(), TableError> + Send>;

/// How long an update waits for the lcores to let go of the spare
/// snapshot (they do at their next polling round) before it copies the
/// current one instead.
const SPARE_WAIT: std::time::Duration = std::time::Duration::from_millis(50);

/// The snapshot published before the current one, kept to be reused by the
/// next update once no lcore holds it, with the changes it lacks.
struct Spare {
    tables: Arc<Tables>,
    behind: Vec<Change>,
}

impl std::fmt::Debug for Spare {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Spare(generation {}, {} behind)",
            self.tables.generation,
            self.behind.len()
        )
    }
}

/// Update statistics (for `/l3fwd` and the tests).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct UpdateStats {
    /// Updates that edited the spare snapshot in place (the changes it
    /// lacked replayed, then the new one).
    pub in_place: u64,
    /// Updates that copied the whole current snapshot (the first one, and
    /// whenever an lcore still held the spare after the wait).
    pub copied: u64,
    /// Nanoseconds the last update took.
    pub last_ns: u64,
}

/// The published snapshot and its generation (shared by the control thread
/// and every lcore).
///
/// Updates are double-buffered: the snapshot replaced by an update becomes
/// the spare; the next update waits (briefly) until no lcore holds the
/// spare any more — each lcore lets go of its old snapshot at its next
/// polling round — replays on it the change it lacks and applies the new
/// one, so an update costs what the change costs instead of a copy of the
/// 64 MiB IPv4 table. A published snapshot is still never written while an
/// lcore can read it (`Arc::get_mut` proves nobody else holds it). When the
/// spare stays held past `SPARE_WAIT` (an lcore descheduled, or stopped),
/// the update copies the current snapshot as before.
#[derive(Debug)]
pub struct Shared {
    generation: AtomicU64,
    current: Mutex<Arc<Tables>>,
    retired: Mutex<Vec<Arc<Tables>>>,
    spare: Mutex<Option<Spare>>,
    stats: Mutex<UpdateStats>,
}

impl Shared {
    /// Publish the first snapshot.
    pub fn new(t: Tables) -> Arc<Shared> {
        Arc::new(Shared {
            generation: AtomicU64::new(t.generation),
            current: Mutex::new(Arc::new(t)),
            retired: Mutex::new(Vec::new()),
            spare: Mutex::new(None),
            stats: Mutex::new(UpdateStats::default()),
        })
    }

    /// The current snapshot.
    pub fn current(&self) -> Arc<Tables> {
        lock(&self.current).clone()
    }

    /// The generation published last.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// How the updates went so far.
    pub fn update_stats(&self) -> UpdateStats {
        *lock(&self.stats)
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

    /// Apply `f` to a copy of the current snapshot (the spare brought up
    /// to date, else a fresh copy) and publish it (nothing is published
    /// when `f` fails). Updates are serialized.
    ///
    /// # Errors
    /// What `f` returned.
    pub fn update<R>(
        &self,
        f: impl Fn(&mut Tables) -> Result<R, TableError> + Send + 'static,
    ) -> Result<R, TableError> {
        let t0 = std::time::Instant::now();
        // Updates are serialized by the spare's lock; `current` is locked
        // only to publish: an lcore that still holds the spare takes the
        // current snapshot (that lock) to let go of it.
        let mut spare = lock(&self.spare);
        let cur = self.current();
        let (mut next, in_place) = match spare.take().and_then(|s| self.unshared(s)) {
            Some(t) => (t, true),
            None => (Arc::new(Tables::clone(&cur)), false),
        };
        let edit = Arc::get_mut(&mut next).expect("a copy of our own, or the unshared spare");
        // On an error `next` may be half-edited: dropped (the next update copies).
        let r = f(edit)?;
        edit.generation = cur.generation + 1;
        let g = edit.generation;
        drop(cur);
        let old = std::mem::replace(&mut *lock(&self.current), next);
        self.generation.store(g, Ordering::Release);
        *spare = Some(Spare {
            tables: old,
            behind: vec![Box::new(move |t: &mut Tables| f(t).map(|_| ()))],
        });
        drop(spare);
        let mut st = lock(&self.stats);
        if in_place {
            st.in_place += 1;
        } else {
            st.copied += 1;
        }
        st.last_ns = t0.elapsed().as_nanos() as u64;
        drop(st);
        self.retire(None);
        Ok(r)
    }

    /// The spare, brought up to date, once no lcore holds it (waiting at
    /// most [`SPARE_WAIT`]); None (the spare retired) when it stays held
    /// or a replayed change fails.
    fn unshared(&self, mut s: Spare) -> Option<Arc<Tables>> {
        let deadline = std::time::Instant::now() + SPARE_WAIT;
        while Arc::get_mut(&mut s.tables).is_none() {
            if std::time::Instant::now() >= deadline {
                self.retire(Some(s.tables));
                return None;
            }
            std::thread::sleep(std::time::Duration::from_micros(200));
        }
        let t = Arc::get_mut(&mut s.tables).expect("unshared");
        for c in &s.behind {
            // It applied to an identical table: it applies again.
            c(t).ok()?;
        }
        Some(s.tables)
    }

    /// Free the snapshots no lcore holds any more (and keep `old` until then).
    pub fn retire(&self, old: Option<Arc<Tables>>) {
        let mut r = lock(&self.retired);
        r.extend(old);
        r.retain(|t| Arc::strong_count(t) > 1);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn hop(port: u16) -> NextHop {
        NextHop {
            port,
            mac: [2, 0, 0, 0, 0, port as u8],
        }
    }

    fn port_of(t: &Tables, a: u32) -> Option<u16> {
        let id = t.v4.as_ref()?.lookup(a)?;
        Some(t.hops[id as usize].port)
    }

    /// Updates edit the spare snapshot once no reader holds it, copy the
    /// current one when a reader does, and never change a snapshot a
    /// reader holds.
    #[test]
    fn updates_reuse_the_spare_and_never_touch_a_held_snapshot() {
        let mut t = Tables::new(Lookup::Lpm, vec![Some([2, 0, 0, 0, 0, 0xa0]); 3], 16);
        t.add_route(Prefix::parse("10.0.0.0/8").unwrap(), hop(0))
            .unwrap();
        let sh = Shared::new(t);
        let mut r = sh.reader();
        let p24 = Prefix::parse("10.1.2.0/24").unwrap();
        let a = 0x0a01_0203;
        // A model: which port 10.1.2.3 goes to after each update.
        for i in 0..12u16 {
            let port = i % 3;
            if i % 4 == 3 {
                sh.update(move |t| t.delete_route(p24)).unwrap();
            } else {
                sh.update(move |t| t.add_route(p24, hop(port))).unwrap();
            }
            r.refresh();
            let want = if i % 4 == 3 { 0 } else { port };
            assert_eq!(port_of(r.tables(), a), Some(want), "after update {i}");
            assert_eq!(r.tables().generation, u64::from(i) + 1);
        }
        let st = sh.update_stats();
        assert_eq!((st.copied, st.in_place), (1, 11), "{st:?}");
        // A reader that keeps its snapshot: the update copies, and what
        // the reader sees does not move.
        let held = sh.reader();
        let before = port_of(held.tables(), a);
        let g = held.tables().generation;
        sh.update(move |t| t.add_route(p24, hop(2))).unwrap();
        sh.update(move |t| t.add_route(p24, hop(1))).unwrap();
        assert_eq!(port_of(held.tables(), a), before);
        assert_eq!(held.tables().generation, g);
        assert_eq!(port_of(&sh.current(), a), Some(1));
        assert_eq!(sh.update_stats().copied, 2, "{:?}", sh.update_stats());
        // A failed update publishes nothing; the next one still works.
        let absent = Prefix::parse("192.0.2.0/24").unwrap();
        assert!(sh.update(move |t| t.delete_route(absent)).is_err());
        assert_eq!(sh.generation(), 14);
        sh.update(move |t| t.delete_route(p24)).unwrap();
        assert_eq!(port_of(&sh.current(), a), Some(0));
    }
}
