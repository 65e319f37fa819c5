//! The idle wait of a receiving lcore (`--idle-sleep`): when a round found
//! nothing, the lcore blocks on its RX queues' interrupt fds (memif's
//! eventfds) with the interrupts unmasked, bounded by the idle sleep, and
//! masks them again before polling; when a queue has no interrupts it
//! sleeps for the idle time instead. Only idle rounds make system calls: a
//! busy lcore polls with every interrupt masked.

use std::os::fd::RawFd;
use std::time::Duration;
use xfwd_pmd::sys::poll::MAX_WAIT_FDS;
use xfwd_pmd::{Intr, RxQueue};

/// How an idle wait ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Woke {
    /// Plain sleep (a queue without interrupts, or too many queues).
    Slept,
    /// Blocked on the interrupts; one fired.
    Interrupt,
    /// Blocked on the interrupts until the timeout.
    Timeout,
    /// Packets were already waiting: no wait at all.
    Pending,
}

/// Scratch space for the wait, allocated once per lcore.
#[derive(Debug, Default)]
pub struct IdleWait {
    fds: Vec<RawFd>,
    ready: Vec<bool>,
}

impl IdleWait {
    /// Room for `queues` RX queues.
    pub fn new(queues: usize) -> IdleWait {
        IdleWait {
            fds: Vec::with_capacity(queues),
            ready: vec![false; queues],
        }
    }

    /// Wait up to `timeout` for packets on `rxqs`.
    pub fn wait(&mut self, rxqs: &mut [Box<dyn RxQueue>], timeout: Duration) -> Woke {
        self.fds.clear();
        let mut armed = 0;
        let mut outcome = None;
        if rxqs.is_empty() || rxqs.len() > MAX_WAIT_FDS || self.ready.len() < rxqs.len() {
            outcome = Some(Woke::Slept);
        }
        if outcome.is_none() {
            for q in rxqs.iter_mut() {
                match q.intr_arm() {
                    Intr::Armed(fd) => {
                        self.fds.push(fd);
                        armed += 1;
                    }
                    Intr::Pending => {
                        outcome = Some(Woke::Pending);
                        break;
                    }
                    Intr::Unsupported => {
                        outcome = Some(Woke::Slept);
                        break;
                    }
                }
            }
        }
        let woke = match outcome {
            Some(w) => w,
            None => {
                let ready = &mut self.ready[..armed];
                match xfwd_pmd::sys::wait_readable(&self.fds, ready, timeout) {
                    Ok(0) => Woke::Timeout,
                    Ok(_) => Woke::Interrupt,
                    // Cannot happen with these fds; never spin on it.
                    Err(_) => Woke::Slept,
                }
            }
        };
        for (i, q) in rxqs.iter_mut().take(armed).enumerate() {
            q.intr_disarm(woke == Woke::Interrupt && self.ready[i]);
        }
        if woke == Woke::Slept {
            std::thread::sleep(timeout);
        }
        woke
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;
    use std::sync::Arc;
    use std::time::Instant;
    use xfwd_mempool::MbufBatch;
    use xfwd_pmd::sys::EventFd;

    /// A queue with an eventfd interrupt and a log of arm/disarm calls.
    #[derive(Debug)]
    struct Fake {
        efd: Arc<EventFd>,
        pending: bool,
        armed: bool,
        disarms: Vec<bool>,
    }

    impl RxQueue for Fake {
        fn rx_burst(&mut self, _: &mut MbufBatch) -> usize {
            0
        }
        fn intr_arm(&mut self) -> Intr {
            if self.pending {
                return Intr::Pending;
            }
            self.armed = true;
            Intr::Armed(self.efd.as_raw_fd())
        }
        fn intr_disarm(&mut self, fired: bool) {
            assert!(self.armed, "disarm without arm");
            self.armed = false;
            self.disarms.push(fired);
            if fired {
                self.efd.take().unwrap();
            }
        }
    }

    #[derive(Debug)]
    struct Plain;
    impl RxQueue for Plain {
        fn rx_burst(&mut self, _: &mut MbufBatch) -> usize {
            0
        }
    }

    fn fake() -> (Box<Fake>, Arc<EventFd>) {
        let efd = Arc::new(EventFd::new(true).unwrap());
        let q = Fake {
            efd: efd.clone(),
            pending: false,
            armed: false,
            disarms: vec![],
        };
        (Box::new(q), efd)
    }

    #[test]
    fn blocks_until_an_interrupt_or_the_timeout_and_disarms_every_queue() {
        let (a, _ea) = fake();
        let (b, eb) = fake();
        let mut qs: Vec<Box<dyn RxQueue>> = vec![a, b];
        let mut w = IdleWait::new(qs.len());
        let t = Instant::now();
        assert_eq!(w.wait(&mut qs, Duration::from_millis(30)), Woke::Timeout);
        assert!(t.elapsed() >= Duration::from_millis(29));
        eb.signal(1).unwrap();
        let t = Instant::now();
        assert_eq!(w.wait(&mut qs, Duration::from_secs(10)), Woke::Interrupt);
        assert!(t.elapsed() < Duration::from_secs(5), "woken, not timed out");
        // The fired fd was cleared: the next wait blocks again.
        assert_eq!(w.wait(&mut qs, Duration::from_millis(1)), Woke::Timeout);
        let log = format!("{qs:?}");
        assert!(
            !log.contains("armed: true"),
            "every queue masked again: {log}"
        );
        assert!(log.contains("disarms: [false, true, false]"), "{log}");
    }

    #[test]
    fn pending_packets_or_a_queue_without_interrupts_never_block() {
        let (mut a, _e) = fake();
        a.pending = true;
        let (b, _f) = fake();
        let mut qs: Vec<Box<dyn RxQueue>> = vec![b, a];
        let mut w = IdleWait::new(qs.len());
        let t = Instant::now();
        assert_eq!(w.wait(&mut qs, Duration::from_secs(10)), Woke::Pending);
        assert!(t.elapsed() < Duration::from_secs(5));
        assert!(!format!("{qs:?}").contains("armed: true"));
        let (c, _g) = fake();
        let mut qs: Vec<Box<dyn RxQueue>> = vec![c, Box::new(Plain)];
        assert_eq!(w.wait(&mut qs, Duration::from_millis(1)), Woke::Slept);
        assert!(!format!("{qs:?}").contains("armed: true"));
    }
}
