//! [`VfioPort`]: the `vfio:` port over a virtio-net device bound to vfio-pci.

use super::args::Args;
use super::device::{self, dev_err};
use super::mmio::{self, Mmio};
use super::pci;
use super::rx::VfioRx;
use super::tx::VfioTx;
use super::virtio::{self, feature, status, Transport};
use super::virtqueue::{Layout, Virtqueue};
use super::{shared_container, DeviceError};
use crate::devargs::Devargs;
use crate::dma::{
    DmaError, DmaMapper, DmaRange, MapInfo, MapOrigin, MappingKind, MappingPin, VfioContainerMapper,
};
use crate::error::PortError;
use crate::port::{Link, Port, PortConf, PortCore, PortInfo, PortQueues};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};
use vfio_ioctls::VfioDevice;
use xfwd_mempool::{Backing, ExtMem, ExtMemConfig, IovaMode, MbufBatch, PageSize, MAX_BURST};

/// `struct virtio_net_hdr` with VERSION_1 (§5.1.6): 12 bytes before every frame.
pub(super) const NET_HDR: usize = 12;
/// Largest frame without MRG_RXBUF/GSO: 1500 MTU + Ethernet header.
const MAX_FRAME: usize = 1514;
/// Env var that enables the `debug_skip_map` devarg (negative tests only).
pub const DEBUG_ENV: &str = "XFWD_DEBUG_DEVARGS";

/// The negative-test mapper: `dma_map` claims success without mapping.
#[derive(Debug)]
struct SkipMapper(Arc<dyn DmaMapper>);

impl DmaMapper for SkipMapper {
    fn kind(&self) -> MappingKind {
        MappingKind::Iommu
    }
    fn dma_map(&self, va: u64, iova: u64, len: u64) -> Result<MapInfo, DmaError> {
        log::warn!("vfio: debug_skip_map: NOT mapping {va:#x}+{len:#x} at IOVA {iova:#x}");
        Ok(MapInfo::new(
            DmaRange::new(va, iova, len),
            MappingKind::Iommu,
            MapOrigin::New,
            None,
        ))
    }
    fn dma_unmap(&self, va: u64, iova: u64, len: u64) -> Result<(), DmaError> {
        match self.0.dma_unmap(va, iova, len) {
            Err(DmaError::NotMapped { .. }) => Ok(()),
            r => r,
        }
    }
    fn mappings(&self) -> Vec<MapInfo> {
        self.0.mappings()
    }
    fn pin(&self, va: u64, iova: u64, len: u64) -> Result<MappingPin, DmaError> {
        self.0.pin(va, iova, len)
    }
    fn translate(&self, va: u64) -> Option<u64> {
        self.0.translate(va)
    }
}

/// The rings' memory and its mapping.
#[derive(Debug)]
struct Rings {
    mem: Arc<ExtMem>,
    iova: u64,
}

impl Rings {
    fn range(&self) -> DmaRange {
        DmaRange::new(self.mem.va() as u64, self.iova, self.mem.len() as u64)
    }
}

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
    rings: Option<Rings>,
    homes: Vec<Home>,
    xstats: Arc<Xstats>,
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

fn dma_err(port: &str) -> impl Fn(DmaError) -> PortError + '_ {
    move |source| PortError::Dma {
        port: port.to_string(),
        source,
    }
}

impl VfioPort {
    /// Probe `vfio:<PCI address>[,debug_skip_map=1|2]`.
    ///
    /// # Errors
    /// Bad devargs, no such device, not a modern virtio-net, not bound to
    /// vfio-pci (with the devbind command that fixes it), VFIO unavailable
    /// or the group not viable, missing virtio features.
    pub fn probe(d: &Devargs) -> Result<VfioPort, PortError> {
        let Args {
            bdf,
            debug_skip_map,
        } = Args::parse(d)?;
        let port = d.raw.as_str();
        let sysfs = device::check(port, &bdf)?;
        let container = shared_container().map_err(dma_err(port))?;
        let group = container.attach(&sysfs).map_err(dma_err(port))?;
        let dev = container.backend().device(&sysfs).ok_or_else(|| {
            dev_err(
                port,
                "probe",
                DeviceError::Unsupported("the VFIO backend has no device handle".into()),
            )
        })?;
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
        let real: Arc<dyn DmaMapper> = Arc::new(container.port_mapper(port));
        let mapper: Arc<dyn DmaMapper> = if debug_skip_map > 0 {
            log::warn!(
                "vfio {bdf}: debug_skip_map={debug_skip_map}: pool memory will NOT be mapped"
            );
            Arc::new(SkipMapper(real.clone()))
        } else {
            real.clone()
        };
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
            rings: None,
            homes: Vec::new(),
            xstats: Arc::default(),
        })
    }

    /// Every page of `mem` must be mapped for this port at the IOVA its mbufs carry.
    fn verify_mapped(&self, mem: &ExtMem, pool: &str) -> Result<(), PortError> {
        let page = mem.page_size().bytes();
        for (i, &iova) in mem.iovas().iter().enumerate() {
            let va = (mem.va() + i * page) as u64;
            let got = self.core.mapper.translate(va);
            if got != Some(iova) {
                return Err(PortError::State {
                    port: self.devargs.clone(),
                    why: format!(
                        "refusing to start: page {i} of pool `{pool}` (va {va:#x}, IOVA {iova:#x}) is {} \
                         for this device; dma_map every chunk of the pool's region on this port \
                         first (the device would DMA to an address the IOMMU does not translate)",
                        match got {
                            None => "not DMA-mapped".to_string(),
                            Some(o) => format!("mapped at a different IOVA {o:#x}"),
                        }
                    ),
                });
            }
        }
        Ok(())
    }

    fn map_rings(&mut self, bytes: usize) -> Result<(), PortError> {
        let port = self.devargs.clone();
        let mut mem = ExtMem::alloc(&ExtMemConfig {
            len: bytes,
            page_size: PageSize::Size4K,
            backing: Backing::Anonymous,
            iova_mode: IovaMode::Va,
            allow_4k: true,
        })
        .map_err(|e| PortError::Io {
            port: port.clone(),
            what: "allocate ring memory".into(),
            source: std::io::Error::other(e),
        })?;
        let len = mem.len() as u64;
        let iova = self
            .container
            .alloc_iova(len, 4096)
            .map_err(dma_err(&port))?;
        let mapped = mem
            .assign_iovas(iova)
            .map_err(|e| PortError::Io {
                port: port.clone(),
                what: "assign ring IOVAs".into(),
                source: std::io::Error::other(e),
            })
            .and_then(|()| {
                self.real
                    .dma_map(mem.va() as u64, iova, len)
                    .map_err(dma_err(&port))
            });
        if let Err(e) = mapped {
            let _ = self.container.free_iova(iova, len);
            return Err(e);
        }
        log::info!(
            "vfio {}: rings va {:#x}+{len:#x} mapped at IOVA {iova:#x}",
            self.bdf,
            mem.va()
        );
        self.rings = Some(Rings {
            mem: Arc::new(mem),
            iova,
        });
        Ok(())
    }

    /// Reset the device (it stops all DMA), take every mbuf back, unmap the rings.
    fn teardown(&mut self) -> Result<(), PortError> {
        let Some(rings) = self.rings.as_ref() else {
            return Ok(());
        };
        let port = self.devargs.clone();
        // Queues whose handles were dropped are parked at home (RX first, then TX);
        // a handle still held by a worker keeps its queue (its mbufs return when it drops).
        let mut vqs: Vec<Option<Virtqueue>> = self
            .homes
            .iter()
            .map(|h| h.lock().unwrap_or_else(PoisonError::into_inner).take())
            .collect();
        // Let the device finish frames already handed to it (bounded), so TX counts are true.
        if let Some(Some(tx)) = vqs.get_mut(1) {
            let t0 = Instant::now();
            while tx.in_flight() > 0 && t0.elapsed() < Duration::from_millis(500) {
                while tx.pop_used().is_some() {}
                std::thread::sleep(Duration::from_millis(1));
            }
            self.xstats
                .tx_unsent_at_stop
                .fetch_add(tx.in_flight() as u64, Ordering::Relaxed);
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
        if let Err(e) = self.transport.reset() {
            // The device may still DMA: stop it at the bus before anything is unmapped.
            log::error!("vfio {}: {e}; clearing bus master", self.bdf);
            pci::set_command(&device::DevConfig(&self.dev), 0, pci::CMD_BUS_MASTER)
                .map_err(|e| dev_err(&port, "disable bus master", e))?;
        }
        for vq in vqs.iter_mut().flatten() {
            drop(vq.take_all());
        }
        drop(vqs);
        self.homes.clear();
        let r = rings.range();
        self.real
            .dma_unmap(r.va, r.iova, r.len)
            .map_err(dma_err(&port))?;
        self.container
            .free_iova(r.iova, r.len)
            .map_err(dma_err(&port))?;
        log::info!("vfio {}: rings unmapped ({r})", self.bdf);
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
            return Err(PortError::NoMbufs {
                port,
                source: xfwd_mempool::AllocError {
                    wanted: conf.rx_desc as usize,
                    available: pool.available(),
                },
            });
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
        let txq = VfioTx {
            vq: Some(tx),
            home: Arc::new(Mutex::new(None)),
            cache: pool.cache(),
            counters: self.core.counters.tx[0].clone(),
            xstats: self.xstats.clone(),
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
        if self.core.started() {
            return Err(self.core.state("already started"));
        }
        let conf = self.core.conf.clone().ok_or_else(|| {
            self.core
                .state("start before configure: configure the queues first")
        })?;
        if self.debug_skip_map < 2 {
            for p in &conf.pools {
                self.verify_mapped(p.mem(), p.name())?;
            }
        } else {
            log::warn!(
                "vfio {}: debug_skip_map=2: NOT checking the pool is mapped",
                self.bdf
            );
        }
        let q = match self.bring_up(&conf) {
            Ok(q) => q,
            Err(e) => {
                if let Err(t) = self.teardown() {
                    log::error!("vfio {}: {t}", self.bdf);
                }
                return Err(e);
            }
        };
        // Pins every mapping (pool chunks and rings): unmap is refused until stop.
        self.core.start()?;
        Ok(q)
    }

    fn core(&self) -> &PortCore {
        &self.core
    }

    fn stop(&mut self) -> Result<(), PortError> {
        self.core.stop()?;
        self.teardown()
    }

    fn link(&self) -> Link {
        Link {
            up: self.transport.link_up(self.features),
            speed_mbps: 0,
        }
    }

    fn xstats(&self) -> Vec<(String, u64)> {
        let x = &self.xstats;
        let mut v = vec![
            (
                "rx_bad_len".to_string(),
                x.rx_bad_len.load(Ordering::Relaxed),
            ),
            (
                "tx_bad_segs".to_string(),
                x.tx_bad_segs.load(Ordering::Relaxed),
            ),
            (
                "tx_unsent_at_stop".to_string(),
                x.tx_unsent_at_stop.load(Ordering::Relaxed),
            ),
            (
                "dma_mappings".to_string(),
                self.real.mappings().len() as u64,
            ),
            (
                "iommu_mapped_bytes".to_string(),
                self.container.mapped_bytes(),
            ),
        ];
        if let Some(r) = &self.rings {
            v.push(("rings_iova".to_string(), r.iova));
        }
        v
    }
}

impl Drop for VfioPort {
    fn drop(&mut self) {
        if let Err(e) = self.teardown() {
            log::error!("vfio {}: teardown at drop: {e}", self.bdf);
        }
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
