//! The `vfio:` driver for the Intel 82576 (igb family), polling mode.
//!
//! ```text
//! vfio:0000:00:07.0[,rss=ip|udp|tcp|none][,rss_key=<80 hex digits>][,reta=0:1:2:3]
//!                  [,promisc=0|1][,allmulti=0|1][,uc=MAC;MAC][,mc=MAC;MAC][,debug_skip_map=1|2]
//! ```
//!
//! # Which family members
//! Only the 82576 register model is driven (device ids 10c9, 10e6, 10e7,
//! 10e8, 1526, 150a, 1518, 150d; QEMU's `-device igb` is an 82576). The
//! others are refused at probe with the reason:
//! - 82575 (10a7, 10a9, 10d6): 4 queues, RETA entries shifted, a different
//!   SRRCTL/queue-enable sequence;
//! - 82580, I350, I354, DH89xxCC: other PHY/PCS setup (and I350's per-port
//!   EEE/DMA coalescing), 8 queues with another RSS queue-index layout;
//! - I210/I211: flash-less NVM, 4 (I211: 2) queues, their own PHY setup;
//! - the virtual functions (82576/I350 VF): a mailbox protocol with the PF.
//!
//! # Memory
//! As the virtio driver: pools are `dma_map`ped per port at IOVAs from the
//! process's container ([`super::prepare_memory`]), `start()` refuses a
//! pool that is not mapped at the IOVAs its mbufs carry, the descriptor
//! rings live in the port's own small external memory mapped at start at
//! IOVAs from the same allocator, and `stop()` resets the device (no DMA
//! after that) before it takes the mbufs back and unmaps the rings.
//!
//! # Queues and RSS
//! N RX and M TX queues (up to 8 each). With more than one RX queue RSS is
//! on: Toeplitz over the hash types of `rss=` (default ip|udp|tcp) with
//! `rss_key` (default: Microsoft's verification key), the 128-entry table
//! from `reta` (repeated; default round robin). The hash of each frame is
//! in its mbuf (`rss_hash`).
//!
//! # Filters
//! The EEPROM MAC in receive-address entry 0, `uc=` adds up to 15 unicast
//! addresses, `mc=` hashes multicast addresses into the multicast table,
//! broadcast is accepted; `promisc=1` / `allmulti=1` accept every
//! unicast+multicast / every multicast frame.
//!
//! # Statistics
//! The MAC's statistics registers (clear on read) are accumulated into
//! xstats (`hw_rx_good_packets`, `hw_rx_missed`, `hw_rx_no_buffer`,
//! per-queue `hw_rx_qN_drops`, …), next to the driver's own counters.

pub mod hw;
pub mod regs;
pub mod ring;
pub mod rss;

use super::args::Args;
use super::common::{self, no_rx_buffers, port_xstats, Lifecycle, Opened, Rings};
use super::device::{self, dev_err, DevConfig};
use super::mmio;
use super::pci;
use super::DeviceError;
use crate::devargs::Devargs;
use crate::dma::{DmaMapper, MappingKind, VfioContainerMapper};
use crate::error::PortError;
use crate::netdev::LinkState;
use crate::port::{parse_mac, Link, Port, PortConf, PortCore, PortInfo, PortQueues};
use hw::{Filters, Hw, MAX_UNICAST};
use ring::{Home, IgbRx, IgbTx, Ring, RxRing, SwXstats, TxRing, DESC};
use rss::RssConf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};
use vfio_ioctls::VfioDevice;
use xfwd_mempool::{MbufBatch, MAX_BURST};

/// Largest frame: 1500 MTU + Ethernet header + one VLAN tag.
const MAX_FRAME: usize = 1518;
/// Most queues per direction this driver sets up.
const MAX_QUEUES: u16 = 8;
/// Most descriptors per ring.
const MAX_DESC: u16 = 4096;
/// How long start waits for the link after the PHY autonegotiation restart.
const LINK_WAIT: Duration = Duration::from_secs(5);

/// Devargs keys of the igb driver beside `debug_skip_map`.
pub const EXTRA_KEYS: &[&str] = &["rss", "rss_key", "reta", "promisc", "allmulti", "uc", "mc"];

/// An igb-family member by PCI device id: `Ok(model)` when driven,
/// `Err(why)` when refused; `None` when not igb at all.
pub fn family_member(device: u16) -> Option<Result<&'static str, String>> {
    let refused = |m: &str, why: &str| {
        Some(Err(format!(
            "the {m} (8086:{device:04x}) is an igb-family NIC this driver does not handle: \
             {why}; xfwd's igb driver drives the 82576 register model only (use the kernel \
             igb driver with af_xdp: or af_packet:)"
        )))
    };
    match device {
        0x10c9 | 0x10e6 | 0x10e7 | 0x10e8 | 0x1526 | 0x150a | 0x1518 | 0x150d => Some(Ok("82576")),
        0x10a7 | 0x10a9 | 0x10d6 => refused("82575", "4 queues, shifted RETA entries"),
        0x150e | 0x150f | 0x1510 | 0x1511 | 0x1516 | 0x1527 => {
            refused("82580", "other PHY/PCS setup and RSS queue layout")
        }
        0x1521 | 0x1522 | 0x1523 | 0x1524 | 0x1546 => {
            refused("I350", "other PHY/PCS setup, EEE and DMA coalescing")
        }
        0x1f40 | 0x1f41 | 0x1f45 | 0x0438 | 0x043a | 0x043c | 0x0440 => {
            refused("I354/DH89xxCC", "backplane/SGMII link setup")
        }
        0x1533..=0x1538 | 0x157b | 0x157c | 0x1539 => {
            refused("I210/I211", "flash-less NVM, fewer queues, own PHY setup")
        }
        0x10ca | 0x152d | 0x1520 | 0x152f => refused(
            "virtual function",
            "a VF is driven through the PF's mailbox protocol",
        ),
        _ => None,
    }
}

/// The vendor:device pair names an igb-family NIC.
pub fn is_igb(ids: &(String, String)) -> bool {
    let dev = u16::from_str_radix(ids.1.trim_start_matches("0x"), 16).ok();
    ids.0 == "0x8086" && dev.and_then(family_member).is_some()
}

fn parse_macs(d: &Devargs, key: &str, max: usize) -> Result<Vec<[u8; 6]>, PortError> {
    let Some(v) = d.get(key) else {
        return Ok(Vec::new());
    };
    let macs: Option<Vec<[u8; 6]>> = v.split(';').map(parse_mac).collect();
    match macs {
        Some(m) if m.len() <= max => Ok(m),
        _ => Err(PortError::Devargs {
            devargs: d.raw.clone(),
            why: format!(
                "`{key}={v}`: expected up to {max} MAC addresses aa:bb:cc:dd:ee:ff joined by `;`"
            ),
        }),
    }
}

/// An 82576 driven from user space through vfio-pci.
pub struct IgbPort {
    core: PortCore,
    devargs: String,
    bdf: String,
    model: &'static str,
    container: Arc<VfioContainerMapper>,
    real: Arc<dyn DmaMapper>,
    _dev: Arc<VfioDevice>,
    hw: Hw,
    mac: [u8; 6],
    rss: RssConf,
    filters: Filters,
    debug_skip_map: u8,
    rings: Option<Rings>,
    rx_homes: Vec<Home<RxRing>>,
    tx_homes: Vec<Home<TxRing>>,
    xstats: Arc<SwXstats>,
    hw_stats: Mutex<Vec<u64>>,
    /// The link its TX queues act on (fresh at each start; [`Port::link`] writes it).
    link: Arc<LinkState>,
}

impl std::fmt::Debug for IgbPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IgbPort")
            .field("bdf", &self.bdf)
            .field("model", &self.model)
            .field("started", &self.core.started())
            .field("rings", &self.rings)
            .finish_non_exhaustive()
    }
}

impl IgbPort {
    /// Probe an igb-family device (see the module for the devargs).
    ///
    /// # Errors
    /// Bad devargs, a family member this driver refuses, not bound to
    /// vfio-pci, VFIO unavailable, BAR0 not mappable, the reset failing.
    pub fn probe(d: &Devargs) -> Result<IgbPort, PortError> {
        let a = Args::parse_with(d, EXTRA_KEYS)?;
        let port = d.raw.as_str();
        let (sysfs, ids) = device::identify(port, &a.bdf)?;
        let device = u16::from_str_radix(ids.1.trim_start_matches("0x"), 16).unwrap_or(0);
        let model = match (ids.0.as_str(), family_member(device)) {
            ("0x8086", Some(Ok(m))) => m,
            ("0x8086", Some(Err(why))) => {
                return Err(dev_err(port, "probe", DeviceError::Unsupported(why)))
            }
            _ => {
                return Err(dev_err(
                    port,
                    "probe",
                    DeviceError::Unsupported(format!(
                        "{} is {}:{}, not an igb-family NIC",
                        a.bdf, ids.0, ids.1
                    )),
                ))
            }
        };
        let rss = RssConf::parse(d.get("rss"), d.get("rss_key"), d.get("reta")).map_err(|why| {
            PortError::Devargs {
                devargs: d.raw.clone(),
                why,
            }
        })?;
        let filters = Filters {
            promisc: d.flag("promisc", false)?,
            allmulti: d.flag("allmulti", false)?,
            unicast: parse_macs(d, "uc", MAX_UNICAST)?,
            multicast: parse_macs(d, "mc", 4096)?,
        };
        let Opened {
            container,
            group,
            dev,
            real,
            mapper,
        } = {
            device::check_bound(port, &a.bdf, &sysfs)?;
            common::open(port, &a.bdf, &sysfs, a.debug_skip_map)?
        };
        let cfg = DevConfig(&dev);
        let bar0 = mmio::map_bar(&dev, 0).map_err(|source| PortError::Io {
            port: port.to_string(),
            what: "mmap BAR0".into(),
            source,
        })?;
        if bar0.len() < 0x10000 {
            return Err(dev_err(
                port,
                "probe",
                DeviceError::Malformed(format!(
                    "BAR0 is {:#x} bytes, an 82576 has 128 KiB of registers",
                    bar0.len()
                )),
            ));
        }
        pci::set_command(&cfg, pci::CMD_MEMORY | pci::CMD_BUS_MASTER, 0)
            .map_err(|e| dev_err(port, "enable bus master", e))?;
        let hw = Hw::new(Arc::new(bar0));
        hw.reset()
            .map_err(|e| dev_err(port, "reset", DeviceError::Timeout(e)))?;
        let mac = hw.mac();
        log::info!(
            "vfio {}: igb {model} (8086:{device:04x}), IOMMU group {group}, MAC {}, link {}",
            a.bdf,
            crate::port::mac_string(&mac),
            if hw.link().up { "up" } else { "negotiating" }
        );
        Ok(IgbPort {
            core: PortCore::new(port, mapper),
            devargs: d.raw.clone(),
            bdf: a.bdf.clone(),
            model,
            container,
            real,
            _dev: dev,
            hw,
            mac,
            rss,
            filters,
            debug_skip_map: a.debug_skip_map,
            rings: None,
            rx_homes: Vec::new(),
            tx_homes: Vec::new(),
            xstats: Arc::default(),
            hw_stats: Mutex::new(Vec::new()),
            link: Arc::default(),
        })
    }

    fn rx_queues(&self) -> usize {
        self.core.conf.as_ref().map_or(1, |c| c.rx_queues as usize)
    }

    fn accumulate_hw_stats(&self) {
        let mut acc = self.hw_stats.lock().unwrap_or_else(PoisonError::into_inner);
        self.hw.accumulate_stats(&mut acc, MAX_QUEUES as usize);
    }
}

impl Lifecycle for IgbPort {
    fn parts(&mut self) -> (&mut PortCore, &str, u8) {
        (&mut self.core, &self.bdf, self.debug_skip_map)
    }

    /// Stop the device (reset: no DMA after it), take every mbuf back, unmap the rings.
    fn teardown(&mut self) -> Result<(), PortError> {
        let Some(rings) = self.rings.take() else {
            return Ok(());
        };
        let port = self.devargs.clone();
        let rxs = common::take_parked(&self.rx_homes);
        let mut txs = common::take_parked(&self.tx_homes);
        self.rx_homes.clear();
        self.tx_homes.clear();
        let deadline = Instant::now() + common::TX_FINISH;
        for tx in txs.iter_mut().flatten() {
            let unsent = common::finish_tx(
                tx,
                deadline,
                |tx| u64::from(tx.in_flight()),
                |tx| tx.reclaim(drop),
            );
            self.xstats
                .tx_unsent_at_stop
                .fetch_add(unsent, Ordering::Relaxed);
        }
        self.hw.disable();
        self.accumulate_hw_stats();
        common::stop_dma(&port, &self.bdf, &self._dev, self.hw.reset())?;
        for mut rx in rxs.into_iter().flatten() {
            drop(rx.take_all());
        }
        for mut tx in txs.into_iter().flatten() {
            drop(tx.take_all());
        }
        rings.unmap(&port, &self.bdf, &self.container, self.real.as_ref())
    }

    fn bring_up(&mut self, conf: &PortConf) -> Result<PortQueues, PortError> {
        let port = self.devargs.clone();
        let (nrx, ntx) = (conf.rx_queues as usize, conf.tx_queues as usize);
        let (rxb, txb) = (conf.rx_desc as usize * DESC, conf.tx_desc as usize * DESC);
        let rings = Rings::map(
            &port,
            &self.bdf,
            &self.container,
            self.real.as_ref(),
            nrx * rxb + ntx * txb,
        )?;
        let win = mmio::over(rings.mem.clone());
        let base = rings.iova;
        self.rings = Some(rings);
        let hw = self.hw.clone();
        hw.disable();
        hw.disable_queues_from(nrx, ntx);
        let rctl = hw.set_filters(&self.mac, &self.filters);
        hw.set_rss(&self.rss, conf.rx_queues)
            .map_err(|why| PortError::Devargs {
                devargs: port.clone(),
                why,
            })?;
        let mut out = PortQueues {
            rx: Vec::new(),
            tx: Vec::new(),
        };
        for qn in 0..nrx {
            let pool = conf.pool(qn).expect("checked at configure");
            let c = pool.config();
            let buf_kib = (u32::from(c.data_room)) / 1024;
            let off = qn * rxb;
            hw.setup_rx_queue(qn, base + off as u64, conf.rx_desc, buf_kib);
            let ring = Ring::new(
                win.sub(off, rxb).expect("sized above"),
                conf.rx_desc,
                hw.regs(),
                regs::rxq(qn) + regs::q::TAIL,
            );
            let home: Home<RxRing> = Arc::new(Mutex::new(None));
            let mut q = IgbRx {
                ring: Some(RxRing::new(ring, u64::from(c.headroom))),
                home: home.clone(),
                cache: pool.cache(),
                scratch: MbufBatch::new(MAX_BURST),
                counters: self.core.counters.rx[qn].clone(),
                xstats: self.xstats.clone(),
                token: self.core.token(),
            };
            self.rx_homes.push(home);
            if q.refill() == 0 {
                return Err(no_rx_buffers(port, conf, pool));
            }
            out.rx.push(Box::new(q));
        }
        let pool = conf.pool(0).expect("checked at configure");
        self.link = Arc::default();
        for qn in 0..ntx {
            let off = nrx * rxb + qn * txb;
            hw.setup_tx_queue(qn, base + off as u64, conf.tx_desc);
            let ring = Ring::new(
                win.sub(off, txb).expect("sized above"),
                conf.tx_desc,
                hw.regs(),
                regs::txq(qn) + regs::q::TAIL,
            );
            let home: Home<TxRing> = Arc::new(Mutex::new(None));
            self.tx_homes.push(home.clone());
            out.tx.push(Box::new(IgbTx {
                ring: Some(TxRing::new(ring)),
                home,
                cache: pool.cache(),
                counters: self.core.counters.tx[qn].clone(),
                xstats: self.xstats.clone(),
                link: self.link.clone(),
                token: self.core.token(),
            }));
        }
        hw.enable(rctl);
        let link = hw.wait_link(LINK_WAIT);
        log::info!(
            "vfio {}: started, {nrx} RX / {ntx} TX queues of {} / {} descriptors, RSS {}, link {}",
            self.bdf,
            conf.rx_desc,
            conf.tx_desc,
            match self.rss.types.filter(|_| nrx > 1) {
                Some(t) => format!("on ({t:?})"),
                None => "off".into(),
            },
            if link.up {
                format!("up {} Mb/s", link.speed_mbps)
            } else {
                format!("DOWN after {LINK_WAIT:?} (frames will not be received)")
            }
        );
        Ok(out)
    }
}

impl Port for IgbPort {
    fn info(&self) -> PortInfo {
        PortInfo {
            driver: "vfio",
            devargs: self.devargs.clone(),
            mac: self.mac,
            max_rx_queues: MAX_QUEUES,
            max_tx_queues: MAX_QUEUES,
            max_rx_desc: MAX_DESC,
            max_tx_desc: MAX_DESC,
            max_burst: MAX_BURST,
            mtu: 1500,
            zero_copy: true,
            mapping: MappingKind::Iommu,
        }
    }

    fn configure(&mut self, conf: &PortConf) -> Result<(), PortError> {
        for (what, n) in [
            ("rx descriptors", conf.rx_desc),
            ("tx descriptors", conf.tx_desc),
        ] {
            if n < 8 || n % 8 != 0 || n > MAX_DESC {
                return Err(PortError::Config {
                    port: self.devargs.clone(),
                    what,
                    value: n.to_string(),
                    accepted: format!(
                        "a multiple of 8 from 8 to {MAX_DESC} (rings are 128-byte multiples)"
                    ),
                });
            }
        }
        let info = self.info();
        self.core.configure(conf, &info)?;
        let reta = self.rss.table(conf.rx_queues);
        for p in &conf.pools {
            let c = p.config();
            if (c.data_room as usize) < MAX_FRAME.next_multiple_of(1024) || reta.is_err() {
                self.core.conf = None;
                if let Err(why) = reta {
                    return Err(PortError::Devargs {
                        devargs: self.devargs.clone(),
                        why,
                    });
                }
                return Err(PortError::Config {
                    port: self.devargs.clone(),
                    what: "pool mbuf layout",
                    value: format!("data room {}", c.data_room),
                    accepted: "data room >= 2048 (the device writes whole KiB buffers)".into(),
                });
            }
        }
        Ok(())
    }

    fn start(&mut self) -> Result<PortQueues, PortError> {
        common::start(self)
    }

    fn stop(&mut self) -> Result<(), PortError> {
        common::stop(self)
    }

    fn link(&self) -> Link {
        // The TX queues follow: nothing is handed to a device whose link is down.
        let l = self.hw.link();
        self.link.follow(l.up);
        Link {
            up: l.up,
            speed_mbps: if l.up { l.speed_mbps } else { 0 },
        }
    }

    fn core(&self) -> &PortCore {
        &self.core
    }

    fn xstats(&self) -> Vec<(String, u64)> {
        self.accumulate_hw_stats();
        let acc = self.hw_stats.lock().unwrap_or_else(PoisonError::into_inner);
        let x = &self.xstats;
        let mut v = port_xstats(
            ("rx_bad_desc", x.rx_bad_desc.load(Ordering::Relaxed)),
            x.tx_bad_segs.load(Ordering::Relaxed),
            x.tx_unsent_at_stop.load(Ordering::Relaxed),
            self.real.as_ref(),
            &self.container,
            self.rings.as_ref(),
        );
        let names = regs::STATS32
            .iter()
            .chain(regs::STATS64)
            .map(|(n, _)| n.to_string());
        let queues = (0..self.rx_queues()).map(|q| format!("hw_rx_q{q}_drops"));
        v.extend(names.chain(queues).zip(acc.iter().copied()));
        v
    }
}

impl Drop for IgbPort {
    fn drop(&mut self) {
        common::teardown_at_drop(self);
        self.hw.disable();
        self.hw.mask_interrupts();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_82576_is_driven_the_rest_refused_with_the_reason() {
        for d in [
            0x10c9, 0x10e6, 0x10e7, 0x10e8, 0x1526, 0x150a, 0x1518, 0x150d,
        ] {
            assert_eq!(family_member(d), Some(Ok("82576")), "{d:#x}");
        }
        for (d, m) in [
            (0x1521, "I350"),
            (0x1533, "I210"),
            (0x10a7, "82575"),
            (0x150e, "82580"),
            (0x10ca, "virtual function"),
        ] {
            let e = family_member(d).unwrap().unwrap_err();
            assert!(e.contains(m) && e.contains("82576 register model"), "{e}");
        }
        assert_eq!(family_member(0x10fb), None);
        assert!(is_igb(&("0x8086".into(), "0x10c9".into())));
        assert!(is_igb(&("0x8086".into(), "0x1521".into())));
        assert!(!is_igb(&("0x1af4".into(), "0x1041".into())));
    }

    #[test]
    fn mac_lists_parse_or_are_refused() {
        let d = Devargs::parse("vfio:00:07.0,mc=01:00:5e:00:00:01;33:33:00:00:00:01").unwrap();
        assert_eq!(parse_macs(&d, "mc", 8).unwrap().len(), 2);
        let d = Devargs::parse("vfio:00:07.0,uc=02:00:00:00:00:01;zz").unwrap();
        let e = parse_macs(&d, "uc", 15).unwrap_err().to_string();
        assert!(e.contains("MAC addresses"), "{e}");
    }
}
