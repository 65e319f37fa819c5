//! The lcore's side of the control commands ([`LcoreHooks`]): run while
//! parked (or at a round boundary for a capture), never per packet.

use super::{Ctx, Stream};
use crate::control::lcore::{Detached, LcoreHooks, LcoreSettings, PortChange};
use crate::fwd::FwdMode;
use xfwd_mempool::{MbufBatch, PoolCache};
use xfwd_pmd::{RxQueue, TxQueue};

/// The lcore's side of a control command (run while parked, never per packet).
pub(super) struct Hooks<'a, 'h> {
    pub(super) ctx: &'a mut Ctx<'h>,
    pub(super) streams: &'a mut [Stream],
    pub(super) rxqs: &'a mut [Box<dyn RxQueue>],
    pub(super) txqs: &'a mut [Box<dyn TxQueue>],
    pub(super) cache: &'a mut PoolCache,
    pub(super) b: &'a mut MbufBatch,
    pub(super) idle_sleep_ns: &'a mut u64,
    pub(super) lat_fwd: bool,
}

impl LcoreHooks for Hooks<'_, '_> {
    fn flush(&mut self) {
        self.txqs.iter_mut().for_each(|q| q.flush());
    }

    fn apply(&mut self, s: LcoreSettings) {
        let c = &mut *self.ctx;
        c.mode = s.mode;
        c.burst = s.burst;
        c.measure = s.mode == FwdMode::RxOnly || (self.lat_fwd && s.mode != FwdMode::TxOnly);
        self.b.set_limit(s.burst);
        *self.idle_sleep_ns = s.idle_sleep_ns;
        for (st, new) in self.streams.iter_mut().zip(s.streams) {
            st.gen = new.gen;
            st.first = new.first;
            st.peer_mac = new.peer_mac;
            st.enabled = new.enabled;
        }
    }

    fn tap(&mut self, taps: Vec<Option<crate::control::capture::StreamTap>>) {
        for (st, t) in self.streams.iter_mut().zip(taps) {
            let c = &st.counters;
            let (rx, tx) = (c.rx.get(), c.tx.get().wrapping_add(c.tx_dropped.get()));
            if let Some(old) = st.tap.take() {
                old.tap.window_edge(&old, rx, tx, false);
            }
            if let Some(new) = &t {
                new.tap.window_edge(new, rx, tx, true);
            }
            st.tap = t;
        }
    }

    fn ports(&mut self, p: PortChange) {
        for i in p.rx_out {
            drop(std::mem::replace(&mut self.rxqs[i], Box::new(Detached)));
        }
        for i in p.tx_out {
            self.txqs[i].flush();
            drop(std::mem::replace(&mut self.txqs[i], Box::new(Detached)));
        }
        for (i, q) in p.rx_in {
            self.rxqs[i] = q;
        }
        for (i, q) in p.tx_in {
            self.txqs[i] = q;
        }
        for (st, on) in self.streams.iter_mut().zip(p.enabled) {
            st.enabled = on;
        }
        // What this lcore caches goes back to the shared pool: with every
        // port stopped, the pool is whole (`show mempool`).
        self.cache.flush();
        xfwd_mempool::flush_lcore_caches();
    }

    fn resume(&mut self) {
        for s in self.streams.iter_mut() {
            self.ctx.tx_first(s, self.txqs, self.cache, self.b);
        }
        self.txqs.iter_mut().for_each(|q| q.flush());
    }
}
