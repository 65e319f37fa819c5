//! [`VfioPort`]: the `vfio:` port over a virtio-net device bound to vfio-pci.

use super::args::{self, Args};
use super::common::{self, no_rx_buffers, port_xstats, Lifecycle, Opened, Rings};
use super::device::{self, dev_err};
use super::mmio::{self, Mmio};
use super::pci;
use super::rx::VfioRx;
use super::tx::VfioTx;
use super::virtio::{self, feature, status, Transport};
use super::virtqueue::{Layout, Virtqueue};
use super::DeviceError;
use crate::devargs::Devargs;
use crate::dma::{DmaMapper, MappingKind, VfioContainerMapper};
use crate::error::PortError;
use crate::netdev::{LinkCondition, LinkState};
use crate::port::{Link, Port, PortConf, PortCore, PortInfo, PortQueues};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use vfio_ioctls::VfioDevice;
use xfwd_mempool::{MbufBatch, MAX_BURST};

/// `struct virtio_net_hdr` with VERSION_1 (§5.1.6): 12 bytes before every frame.
pub(super) const NET_HDR: usize = 12;
/// Largest frame without MRG_RXBUF/GSO: 1500 MTU + Ethernet header.
const MAX_FRAME: usize = 1514;
/// Env var that enables the `debug_skip_map` and `debug_bad_desc` devargs (negative tests only).
pub const DEBUG_ENV: &str = "XFWD_DEBUG_DEVARGS";

/// Where a queue handle parks its virtqueue when dropped, so `stop()` gets
/// every posted mbuf back once the device is reset.
pub(super) type Home = Arc<Mutex<Option<Virtqueue>>>;

#[derive(Debug, Default)]
pub(super) struct Xstats {
    pub(super) rx_bad_len: AtomicU64,
    pub(super) tx_unsent_at_stop: AtomicU64,
    pub(super) tx_bad_segs: AtomicU64,
    pub(super) device_errors: AtomicU64,
}

/// A virtio-net device driven from user space through vfio-pci.
pub struct VfioPort {
    core: PortCore,
    devargs: String,
    bdf: String,
    container: Arc<VfioContainerMapper>,
    /// The real mapper (rings are always really mapped).
    real: Arc<dyn DmaMapper>,
    dev: Arc<VfioDevice>,
    transport: Transport,
    features: u64,
    mac: [u8; 6],
    qmax: u16,
    debug_skip_map: u8,
    /// Negative tests only: post one malformed TX chain at start (the device then needs a reset).
    debug_bad_desc: bool,
    rings: Option<Rings>,
    homes: Vec<Home>,
    xstats: Arc<Xstats>,
    /// The link its TX queue acts on (fresh at each start; [`Port::link`] writes it).
    link: Arc<LinkState>,
}

impl std::fmt::Debug for VfioPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VfioPort")
            .field("bdf", &self.bdf)
            .field("features", &format_args!("{:#x}", self.features))
            .field("started", &self.core.started())
            .field("rings", &self.rings)
            .finish_non_exhaustive()
    }
}

impl VfioPort {
    /// Probe `vfio:<PCI address>[,debug_skip_map=1|2][,debug_bad_desc=1]`.
    ///
    /// # Errors
    /// Bad devargs, no such device, not a modern virtio-net, not bound to
    /// vfio-pci (with the devbind command that fixes it), VFIO unavailable
    /// or the group not viable, missing virtio features.
    pub fn probe(d: &Devargs) -> Result<VfioPort, PortError> {
        let Args {
            bdf,
            debug_skip_map,
        } = Args::parse_with(d, args::VIRTIO_KEYS)?;
        let debug_bad_desc = args::debug_bad_desc(d)?;
        let port = d.raw.as_str();
        let sysfs = device::check(port, &bdf)?;
        let Opened {
            container,
            group,
            dev,
            real,
            mapper,
        } = common::open(port, &bdf, &sysfs, debug_skip_map)?;
        let cfg = device::DevConfig(&dev);
        let de = |what: &'static str| move |e| dev_err(port, what, e);
        let caps = virtio::find_caps(&cfg).map_err(de("virtio capabilities"))?;
        let mut bars: [Option<Mmio>; 6] = Default::default();
        for b in [
            Some(caps.common.bar),
            Some(caps.notify.bar),
            caps.device.map(|x| x.bar),
        ]
        .into_iter()
        .flatten()
        {
            if bars[b as usize].is_none() {
                bars[b as usize] =
                    Some(
                        mmio::map_bar(&dev, u32::from(b)).map_err(|source| PortError::Io {
                            port: port.to_string(),
                            what: format!("mmap BAR{b}"),
                            source,
                        })?,
                    );
            }
        }
        let transport = Transport::new(&caps, &bars).map_err(de("virtio transport"))?;
        pci::set_command(&cfg, pci::CMD_MEMORY | pci::CMD_BUS_MASTER, 0)
            .map_err(de("enable bus master"))?;
        transport.reset().map_err(de("reset"))?;
        transport.add_status(status::ACKNOWLEDGE | status::DRIVER);
        let offered = transport.device_features();
        let features = virtio::negotiate(offered).map_err(de("feature negotiation"))?;
        let mac = if features & feature::NET_MAC != 0 {
            transport.mac().unwrap_or([0x02, 0, 0, 0, 0, 1])
        } else {
            [0x02, 0, 0, 0x56, 0, 1]
        };
        let qmax = transport.queue_max(0).min(transport.queue_max(1));
        if qmax == 0 || transport.num_queues() < 2 {
            return Err(dev_err(
                port,
                "probe",
                DeviceError::Malformed("the device has no RX/TX queue pair".into()),
            ));
        }
        transport.reset().map_err(de("reset"))?;
        log::info!(
            "vfio {bdf}: virtio-net, IOMMU group {group}, features offered {offered:#x} accepted \
             {features:#x}, MAC {}, queue size max {qmax}",
            crate::port::mac_string(&mac)
        );
        Ok(VfioPort {
            core: PortCore::new(port, mapper),
            devargs: d.raw.clone(),
            bdf,
            container,
            real,
            dev,
            transport,
            features,
            mac,
            qmax,
            debug_skip_map,
            debug_bad_desc,
            rings: None,
            homes: Vec::new(),
            xstats: Arc::default(),
            link: Arc::default(),
        })
    }

    fn map_rings(&mut self, bytes: usize) -> Result<(), PortError> {
        let rings = Rings::map(
            &self.devargs,
            &self.bdf,
            &self.container,
            self.real.as_ref(),
            bytes,
        )?;
        self.rings = Some(rings);
        Ok(())
    }
}

impl Lifecycle for VfioPort {
    fn parts(&mut self) -> (&mut PortCore, &str, u8) {
        (&mut self.core, &self.bdf, self.debug_skip_map)
    }

    /// Reset the device (it stops all DMA), take every mbuf back, unmap the rings.
    fn teardown(&mut self) -> Result<(), PortError> {
        let Some(rings) = self.rings.as_ref() else {
            return Ok(());
        };
        let port = self.devargs.clone();
        // RX first, then TX.
        let mut vqs = common::take_parked(&self.homes);
        if let Some(Some(tx)) = vqs.get_mut(1) {
            let unsent = common::finish_tx(
                tx,
                Instant::now() + common::TX_FINISH,
                |tx| tx.in_flight() as u64,
                |tx| while tx.pop_used().is_some() {},
            );
            self.xstats
                .tx_unsent_at_stop
                .fetch_add(unsent, Ordering::Relaxed);
        }
        let st = self.transport.status();
        if st & (status::NEEDS_RESET | status::FAILED) != 0 {
            self.xstats.device_errors.fetch_add(1, Ordering::Relaxed);
            log::error!(
                "vfio {}: the device reported DEVICE_NEEDS_RESET (status {st:#x}): it hit an \
                 error while running, e.g. a DMA the IOMMU blocked",
                self.bdf
            );
        }
        common::stop_dma(&port, &self.bdf, &self.dev, self.transport.reset())?;
        for vq in vqs.iter_mut().flatten() {
            drop(vq.take_all());
        }
        drop(vqs);
        self.homes.clear();
        rings.unmap(&port, &self.bdf, &self.container, self.real.as_ref())?;
        self.rings = None;
        Ok(())
    }

    fn bring_up(&mut self, conf: &PortConf) -> Result<PortQueues, PortError> {
        let port = self.devargs.clone();
        let de = |what: &'static str| {
            let port = port.clone();
            move |e| dev_err(&port, what, e)
        };
        let rxl = Layout::new(conf.rx_desc).expect("checked at configure");
        let txl = Layout::new(conf.tx_desc).expect("checked at configure");
        self.map_rings(rxl.bytes + txl.bytes)?;
        let rings = self.rings.as_ref().expect("just mapped");
        let win = mmio::over(rings.mem.clone());
        let sub = |off, len| win.sub(off, len).expect("sized from the layouts");
        let mut rx = Virtqueue::new(sub(0, rxl.bytes), rings.iova, rxl);
        let mut tx = Virtqueue::new(
            sub(rxl.bytes, txl.bytes),
            rings.iova + rxl.bytes as u64,
            txl,
        );
        let t = &self.transport;
        t.reset().map_err(de("reset"))?;
        t.add_status(status::ACKNOWLEDGE | status::DRIVER);
        t.set_features(self.features).map_err(de("features"))?;
        rx.set_notifier(
            t.setup_queue(0, conf.rx_desc, rx.addrs())
                .map_err(de("RX queue"))?,
        );
        tx.set_notifier(
            t.setup_queue(1, conf.tx_desc, tx.addrs())
                .map_err(de("TX queue"))?,
        );
        let pool = conf.pool(0).expect("checked at configure");
        let headroom = pool.config().headroom as u64;
        let mut rxq = VfioRx {
            vq: Some(rx),
            home: Arc::new(Mutex::new(None)),
            cache: pool.cache(),
            scratch: MbufBatch::new(MAX_BURST),
            headroom,
            counters: self.core.counters.rx[0].clone(),
            xstats: self.xstats.clone(),
            _token: self.core.token(),
        };
        let posted = rxq.refill();
        if posted == 0 {
            return Err(no_rx_buffers(port, conf, pool));
        }
        t.add_status(status::DRIVER_OK);
        let st = t.status();
        if st & (status::NEEDS_RESET | status::FAILED) != 0 {
            return Err(dev_err(
                &port,
                "start",
                DeviceError::Failed(format!("status {st:#x} after DRIVER_OK")),
            ));
        }
        if let Some(vq) = rxq.vq.as_mut() {
            vq.kick();
        }
        if self.debug_bad_desc {
            // The device reads the chain's first descriptor (12 bytes of our
            // own descriptor table, mapped) and then refuses its `next`:
            // QEMU's virtio_error() sets DEVICE_NEEDS_RESET.
            let id = tx.post_malformed(tx.addrs().desc, NET_HDR as u32);
            tx.kick();
            log::warn!(
                "vfio {}: debug_bad_desc=1: posted a malformed TX chain (descriptor {id:?}, \
                 next out of range) and kicked",
                self.bdf
            );
        }
        self.link = Arc::default();
        let txq = VfioTx {
            vq: Some(tx),
            home: Arc::new(Mutex::new(None)),
            cache: pool.cache(),
            counters: self.core.counters.tx[0].clone(),
            xstats: self.xstats.clone(),
            link: self.link.clone(),
            _token: self.core.token(),
        };
        self.homes = vec![rxq.home.clone(), txq.home.clone()];
        log::info!(
            "vfio {}: started, {posted} RX buffers posted, link {}",
            self.bdf,
            if self.transport.link_up(self.features) {
                "up"
            } else {
                "down"
            }
        );
        Ok(PortQueues {
            rx: vec![Box::new(rxq)],
            tx: vec![Box::new(txq)],
        })
    }
}

impl Port for VfioPort {
    fn info(&self) -> PortInfo {
        PortInfo {
            driver: "vfio",
            devargs: self.devargs.clone(),
            mac: self.mac,
            max_rx_queues: 1,
            max_tx_queues: 1,
            max_rx_desc: self.qmax,
            max_tx_desc: self.qmax,
            max_burst: MAX_BURST,
            mtu: 1500,
            zero_copy: true,
            mapping: MappingKind::Iommu,
        }
    }

    fn configure(&mut self, conf: &PortConf) -> Result<(), PortError> {
        let info = self.info();
        for (what, n) in [
            ("rx descriptors", conf.rx_desc),
            ("tx descriptors", conf.tx_desc),
        ] {
            if Layout::new(n).is_none() {
                return Err(PortError::Config {
                    port: self.devargs.clone(),
                    what,
                    value: n.to_string(),
                    accepted: format!("a power of two up to {} (split virtqueue)", self.qmax),
                });
            }
        }
        self.core.configure(conf, &info)?;
        for p in &conf.pools {
            let c = p.config();
            if (c.headroom as usize) < NET_HDR || (c.data_room as usize) < MAX_FRAME {
                self.core.conf = None;
                return Err(PortError::Config {
                    port: self.devargs.clone(),
                    what: "pool mbuf layout",
                    value: format!("headroom {} data room {}", c.headroom, c.data_room),
                    accepted: format!(
                        "headroom >= {NET_HDR} (the virtio-net header goes there) and data room \
                         >= {MAX_FRAME}"
                    ),
                });
            }
        }
        Ok(())
    }

    fn start(&mut self) -> Result<PortQueues, PortError> {
        common::start(self)
    }

    fn core(&self) -> &PortCore {
        &self.core
    }

    fn stop(&mut self) -> Result<(), PortError> {
        common::stop(self)
    }

    fn link(&self) -> Link {
        // A device that set DEVICE_NEEDS_RESET (or FAILED) no longer
        // processes its rings: report it as a lost link (xfwd's link check
        // and `on_link_loss` then treat it as any port whose link went away),
        // for good until the next start. The TX queue follows: nothing is
        // handed to a device whose link is down.
        let failed = self.core.started()
            && self.transport.status() & (status::NEEDS_RESET | status::FAILED) != 0;
        if failed {
            self.link.set_lost();
        }
        let up = self.link.follow(self.transport.link_up(self.features)) == LinkCondition::Up;
        Link { up, speed_mbps: 0 }
    }

    fn xstats(&self) -> Vec<(String, u64)> {
        let x = &self.xstats;
        let mut v = port_xstats(
            ("rx_bad_len", x.rx_bad_len.load(Ordering::Relaxed)),
            x.tx_bad_segs.load(Ordering::Relaxed),
            x.tx_unsent_at_stop.load(Ordering::Relaxed),
            self.real.as_ref(),
            &self.container,
            self.rings.as_ref(),
        );
        let lost = self.link.get() == LinkCondition::Lost;
        v.push(("link_lost".into(), u64::from(lost)));
        v
    }
}

impl Drop for VfioPort {
    fn drop(&mut self) {
        common::teardown_at_drop(self);
        let _ = self.transport.reset();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_refuses_bad_devargs_and_missing_devices_with_reasons() {
        let e = VfioPort::probe(&Devargs::parse("vfio:").unwrap())
            .unwrap_err()
            .to_string();
        assert!(e.contains("PCI address"), "{e}");
        let e = VfioPort::probe(&Devargs::parse("vfio:eth0").unwrap())
            .unwrap_err()
            .to_string();
        assert!(e.contains("not a PCI address"), "{e}");
        let e = VfioPort::probe(&Devargs::parse("vfio:0000:00:1f.0,debug_skip_map=1").unwrap())
            .unwrap_err()
            .to_string();
        assert!(e.contains(DEBUG_ENV), "{e}");
        let e = VfioPort::probe(&Devargs::parse("vfio:0000:7f:1f.7").unwrap())
            .unwrap_err()
            .to_string();
        assert!(e.contains("no PCI device"), "{e}");
    }
}
