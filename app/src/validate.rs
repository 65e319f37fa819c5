//! Turn [`Settings`] into a [`Plan`], checking everything before any memory
//! is touched: value ranges, names, port capabilities (ports are probed, not
//! configured), the lcore set, the stream map and the hugepage plan against
//! free pages. Each error names the key or flag, the value and what is
//! accepted.

use crate::config::Settings;
use crate::cpu;
use crate::error::ConfigError;
use crate::fwd::txgen::{GenConfig, MIN_LEN};
use crate::fwd::FwdMode;
use crate::plan::{OnLinkLoss, Plan, PortPlan, RunSettings};
use crate::streams::{check_allowed, check_ownership, default_lcores, explicit, round_robin};
use std::net::Ipv4Addr;
use xfwd_mempool::{
    extmem, Backing, ExtMemConfig, IovaMode, PageSize, PoolConfig, PoolPlan, CACHE_MAX_SIZE,
    MAX_BURST,
};
use xfwd_pmd::port::parse_mac;

pub(crate) struct V<'a> {
    pub(crate) s: &'a Settings,
}

impl V<'_> {
    pub(crate) fn bad<T>(
        &self,
        key: &str,
        value: impl ToString,
        accepted: impl Into<String>,
    ) -> Result<T, ConfigError> {
        Err(ConfigError::Invalid {
            key: self.s.name(key),
            value: value.to_string(),
            accepted: accepted.into(),
        })
    }

    pub(crate) fn range(
        &self,
        key: &str,
        v: u64,
        lo: u64,
        hi: u64,
        what: &str,
    ) -> Result<(), ConfigError> {
        if v < lo || v > hi {
            return self.bad(key, v, format!("{lo} ..= {hi} {what}"));
        }
        Ok(())
    }
}

/// Longest idle sleep (`fwd.idle_sleep_us`): 100 ms.
const IDLE_SLEEP_MAX_US: u64 = 100_000;

/// Validate `s` and probe its ports.
///
/// # Errors
/// The first [`ConfigError`] found.
pub fn validate(s: &Settings) -> Result<Plan, ConfigError> {
    let v = V { s };
    let c = &s.cfg;

    // Memory.
    let m = &c.memory;
    let page_size = PageSize::parse(&m.page_size).map_or_else(
        || {
            v.bad(
                "memory.page_size",
                &m.page_size,
                "2M, 1G, or 4K (with --allow-4k)",
            )
        },
        Ok,
    )?;
    let backing = match m.backing.as_str() {
        "anon" | "anonymous" => Backing::Anonymous,
        "hugetlbfs" => Backing::Hugetlbfs(m.hugetlbfs_dir.clone()),
        "memfd" => Backing::Memfd,
        "heap" => Backing::Heap,
        other => {
            return v.bad(
                "memory.backing",
                other,
                "anon, hugetlbfs, memfd, heap (= --no-huge)",
            )
        }
    };
    if let Backing::Hugetlbfs(dir) = &backing {
        let found = match dir {
            Some(d) => d.is_dir().then(|| d.clone()),
            None => extmem::hugetlbfs_mount(page_size),
        };
        if found.is_none() {
            return v.bad(
                "memory.backing",
                format!(
                    "hugetlbfs (dir {})",
                    dir.as_ref().map_or("from /proc/mounts".into(), |d| d.display().to_string())
                ),
                format!(
                    "an existing hugetlbfs mount for {page_size} pages \
                     (`mount -t hugetlbfs -o pagesize={page_size} nodev /dev/hugepages`), or anon/memfd"
                ),
            );
        }
    }
    if page_size == PageSize::Size4K && !m.allow_4k && backing != Backing::Heap {
        return v.bad(
            "memory.page_size",
            "4K",
            "2M or 1G hugepages; 4K only with --allow-4k (memory.allow_4k = true)",
        );
    }
    let iova_mode = IovaMode::parse(&m.iova_mode)
        .map_or_else(|| v.bad("memory.iova_mode", &m.iova_mode, "va, pa"), Ok)?;
    if iova_mode == IovaMode::Pa && backing == Backing::Heap {
        return v.bad(
            "memory.iova_mode",
            "pa",
            "va with heap memory (--no-huge has no physical addresses)",
        );
    }
    if iova_mode == IovaMode::Pa && !xfwd_mempool::caps::is_root() {
        return v.bad(
            "memory.iova_mode",
            "pa",
            "va unless running as root (pa reads /proc/self/pagemap)",
        );
    }

    // Pool.
    let p = &c.pool;
    v.range("pool.nb_mbufs", p.nb_mbufs.into(), 64, 1 << 24, "mbufs")?;
    v.range(
        "pool.mbuf_size",
        p.mbuf_size.into(),
        128,
        65535 - 128,
        "bytes of data room",
    )?;
    v.range(
        "pool.mbcache",
        p.mbcache.into(),
        0,
        CACHE_MAX_SIZE.into(),
        "mbufs",
    )?;
    if u64::from(p.mbcache) * 3 / 2 > u64::from(p.nb_mbufs) {
        return v.bad(
            "pool.mbcache",
            p.mbcache,
            format!(
                "at most nb_mbufs / 1.5 = {} (a cache holds up to 1.5 × its size)",
                p.nb_mbufs * 2 / 3
            ),
        );
    }

    // Forwarding.
    let f = &c.fwd;
    let mode = FwdMode::parse(&f.forward_mode).map_or_else(
        || v.bad("fwd.forward_mode", &f.forward_mode, FwdMode::accepted()),
        Ok,
    )?;
    v.range("fwd.burst", f.burst.into(), 1, MAX_BURST as u64, "packets")?;
    v.range("fwd.rxq", f.rxq.into(), 1, 1024, "queues")?;
    v.range("fwd.txq", f.txq.into(), 1, 1024, "queues")?;
    v.range("fwd.rxd", f.rxd.into(), 1, 65535, "descriptors")?;
    v.range("fwd.txd", f.txd.into(), 1, 65535, "descriptors")?;
    if f.burst > f.rxd {
        return v.bad(
            "fwd.burst",
            f.burst,
            format!("at most the RX ring size fwd.rxd = {}", f.rxd),
        );
    }
    if f.burst > f.txd {
        return v.bad(
            "fwd.burst",
            f.burst,
            format!("at most the TX ring size fwd.txd = {}", f.txd),
        );
    }
    v.range("fwd.tx_retry", f.tx_retry.into(), 0, 1_000_000, "retries")?;
    v.range(
        "fwd.idle_sleep_us",
        f.idle_sleep_us.into(),
        0,
        IDLE_SLEEP_MAX_US,
        "microseconds (0 = busy poll)",
    )?;
    let topology: &'static str = match f.port_topology.as_str() {
        "paired" => "paired",
        "chained" => "chained",
        "loop" => "loop",
        other => return v.bad("fwd.port_topology", other, "paired, chained, loop"),
    };
    let Some(on_link_loss) = OnLinkLoss::parse(&f.on_link_loss) else {
        return v.bad("fwd.on_link_loss", &f.on_link_loss, OnLinkLoss::ACCEPTED);
    };

    // Stats.
    let st = &c.stats;
    if !st.period.is_finite()
        || !(0.0..=3600.0).contains(&st.period)
        || (st.period > 0.0 && st.period < 0.01)
    {
        return v.bad(
            "stats.period",
            st.period,
            "0 (off) or 0.01 ..= 3600 seconds",
        );
    }
    if !st.duration.is_finite() || !(0.0..=31_536_000.0).contains(&st.duration) {
        return v.bad(
            "stats.duration",
            st.duration,
            "0 (until Ctrl-C) or up to 31536000 seconds",
        );
    }
    if let Some(path) = &st.telemetry {
        let parent = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(std::path::Path::new("."));
        if !parent.is_dir() {
            return v.bad(
                "stats.telemetry",
                path.display(),
                "a socket path in an existing directory",
            );
        }
        if path.exists() {
            use std::os::unix::fs::FileTypeExt;
            let is_sock = std::fs::symlink_metadata(path)
                .map(|m| m.file_type().is_socket())
                .unwrap_or(false);
            if !is_sock {
                return v.bad(
                    "stats.telemetry",
                    path.display(),
                    "a new path or a stale socket (this is an existing file)",
                );
            }
        }
    }

    // Generator.
    let t = &c.txonly;
    v.range(
        "txonly.pkt_len",
        t.pkt_len.into(),
        MIN_LEN as u64,
        p.mbuf_size.min(9600).into(),
        "bytes (60 ..= pool.mbuf_size)",
    )?;
    v.range("txonly.flows", t.flows.into(), 1, 65536, "flows")?;
    let ip = |key: &str, s: &str| -> Result<Ipv4Addr, ConfigError> {
        s.trim()
            .parse()
            .map_or_else(|_| v.bad(key, s, "an IPv4 address like 198.18.0.1"), Ok)
    };
    let mix = if t.mix.trim().is_empty() {
        Vec::new()
    } else {
        let max = p.mbuf_size.min(9600) as usize;
        match crate::fwd::mix::parse(&t.mix, MIN_LEN, max) {
            Ok(m) => m,
            Err(e) => {
                return v.bad(
                    "txonly.mix",
                    &t.mix,
                    format!("imix or LEN:WEIGHT,... like 64:7,570:4,1518:1 ({e})"),
                )
            }
        }
    };
    let gen = GenConfig {
        pkt_len: t.pkt_len as usize,
        mix,
        flows: t.flows,
        src_ip: ip("txonly.src_ip", &t.src_ip)?,
        dst_ip: ip("txonly.dst_ip", &t.dst_ip)?,
        src_port: {
            v.range("txonly.src_port", t.src_port.into(), 0, 65535, "")?;
            t.src_port as u16
        },
        dst_port: {
            v.range("txonly.dst_port", t.dst_port.into(), 0, 65535, "")?;
            t.dst_port as u16
        },
        rate_pps: None,
        count: t.count,
    };
    let link_bps = match crate::fwd::txgen::parse_speed(&t.link_speed) {
        Some(b) => b,
        None => {
            return v.bad(
                "txonly.link_speed",
                &t.link_speed,
                "a link speed like 1G, 10G, 25G, 100G",
            )
        }
    };
    let gen = GenConfig {
        rate_pps: if t.rate.trim().is_empty() {
            None
        } else {
            let mean = crate::fwd::mix::mean_len(&gen.shares());
            match crate::fwd::txgen::parse_rate(&t.rate, link_bps, mean) {
                Some(r) => Some(r),
                None => {
                    return v.bad(
                        "txonly.rate",
                        &t.rate,
                        "packets/s (250000, 1.5M, 200k, at least 1) or a percentage of the link speed (10%, 0 < P <= 100)",
                    )
                }
            }
        },
        ..gen
    };

    // Ports: probe (opens the device, allocates nothing) and check layouts.
    if c.ports.is_empty() {
        return v.bad(
            "port",
            "none",
            "at least one [[port]] with devargs, or --port DEVARGS",
        );
    }
    let n_ports = c.ports.len();
    if n_ports > 64 {
        return v.bad("port", n_ports, "at most 64 ports");
    }
    let mask: u64 = match &f.portmask {
        None => (1u64 << n_ports) - 1,
        Some(mk) => {
            let h = mk.trim().trim_start_matches("0x").trim_start_matches("0X");
            match u64::from_str_radix(h, 16) {
                Ok(0) => return v.bad("fwd.portmask", mk, "a non-zero hex mask"),
                Ok(x) if x >> n_ports != 0 => {
                    return v.bad(
                        "fwd.portmask",
                        mk,
                        format!("bits 0..{n_ports} only: {n_ports} ports are configured"),
                    )
                }
                Ok(x) => x,
                Err(_) => return v.bad("fwd.portmask", mk, "a hex mask like 0x3"),
            }
        }
    };
    let mut ports = Vec::new();
    for (i, pc) in c.ports.iter().enumerate() {
        if mask & (1 << i) == 0 {
            continue;
        }
        let key = if s.flags.contains_key("port") {
            format!("`--port {}`", pc.devargs)
        } else {
            format!("`port[{i}].devargs` (in {})", s.source)
        };
        let port = xfwd_pmd::probe(&pc.devargs).map_err(|source| ConfigError::Port {
            key: key.clone(),
            source,
        })?;
        let info = port.info();
        if info.driver == "pcap" {
            precheck_pcap(&pc.devargs).map_err(|source| ConfigError::Port {
                key: key.clone(),
                source,
            })?;
        }
        let lim = |what: &str, flag: &str, val: u32, max: u64| -> Result<(), ConfigError> {
            if u64::from(val) > max {
                return v.bad(
                    flag,
                    val,
                    format!("at most {max} {what} for port{i} ({})", info.devargs),
                );
            }
            Ok(())
        };
        lim("RX queues", "fwd.rxq", f.rxq, info.max_rx_queues.into())?;
        lim("TX queues", "fwd.txq", f.txq, info.max_tx_queues.into())?;
        // Descriptors: a device with smaller queues gets its maximum (DPDK's
        // virtio PMD clamps the same way); the plan shows it.
        let rxd = f.rxd.min(info.max_rx_desc.into()) as u16;
        let txd = f.txd.min(info.max_tx_desc.into()) as u16;
        if f.burst > u32::from(rxd) {
            return v.bad(
                "fwd.burst",
                f.burst,
                format!(
                    "at most {rxd}: port{i}'s RX queues hold {rxd} descriptors ({})",
                    info.devargs
                ),
            );
        }
        lim(
            "packets per burst",
            "fwd.burst",
            f.burst,
            info.max_burst as u64,
        )?;
        let peer_mac = match &pc.eth_peer {
            Some(mac) => parse_mac(mac).map_or_else(
                || {
                    v.bad(
                        "port.eth_peer",
                        format!("{mac} (port{i})"),
                        "a MAC like 02:00:00:00:00:01",
                    )
                },
                Ok,
            )?,
            None => [0x02, 0, 0, 0, 0, i as u8],
        };
        ports.push(PortPlan {
            id: i as u16,
            port,
            info,
            peer_mac,
            rxd,
            txd,
        });
    }

    // Lcores and streams.
    let allowed = cpu::allowed();
    let listed = match &f.lcores {
        Some(l) => Some(cpu::parse_list(l).map_or_else(
            |why| {
                v.bad(
                    "fwd.lcores",
                    format!("{l} ({why})"),
                    "CPU ids and ranges like 0-1 or 1,3",
                )
            },
            Ok,
        )?),
        None => None,
    };
    let mut lcores = if c.lcore_map.is_empty() {
        let cpus = listed.unwrap_or_else(|| default_lcores(&allowed));
        check_allowed(&v, "fwd.lcores", &cpus, &allowed)?;
        round_robin(
            &v,
            &ports,
            topology,
            f.rxq as u16,
            f.txq as u16,
            mode,
            &cpus,
        )?
    } else {
        explicit(
            &v,
            &c.lcore_map,
            listed.as_deref(),
            &allowed,
            &ports,
            f.rxq as u16,
            f.txq as u16,
            mode,
        )?
    };
    let l3fwd = if lcores.iter().any(|l| l.mode == FwdMode::L3fwd) {
        Some(crate::fwd::l3fwd::plan::prepare(
            s,
            &mut lcores,
            &ports,
            f.txq as u16,
        )?)
    } else {
        None
    };
    check_ownership(&v, &lcores)?;

    // Pool and memory plan.
    let workers = lcores.len() as u64;
    let min = workers * (u64::from(p.mbcache) * 3 / 2 + 2 * u64::from(f.burst));
    if u64::from(p.nb_mbufs) < min {
        return v.bad(
            "pool.nb_mbufs",
            p.nb_mbufs,
            format!("at least {min} for {workers} lcores (each may hold 1.5 × mbcache + 2 bursts)"),
        );
    }
    let pool = PoolConfig {
        name: "mbuf_pool".into(),
        n: p.nb_mbufs,
        data_room: p.mbuf_size as u16,
        headroom: 128,
        cache_size: p.mbcache,
        allow_straddle: true,
    };
    let contiguous = iova_mode == IovaMode::Va || backing == Backing::Heap;
    let pool_plan =
        PoolPlan::compute(&pool, page_size, contiguous).map_err(|source| ConfigError::Pool {
            key: format!("{} / {}", s.name("pool.nb_mbufs"), s.name("pool.mbuf_size")),
            source,
        })?;
    let free_pages = if page_size.is_huge() && backing != Backing::Heap {
        extmem::check_free_hugepages(page_size, pool_plan.pages as u64).map_err(|source| {
            ConfigError::Memory {
                key: format!(
                    "{} = {} mbufs of {} B on {} {} pages ({})",
                    s.name("pool.nb_mbufs"),
                    p.nb_mbufs,
                    pool_plan.obj_size,
                    pool_plan.pages,
                    page_size,
                    s.name("memory.page_size")
                ),
                source,
            }
        })?;
        Some(extmem::free_hugepages(page_size))
    } else {
        None
    };
    let plan = Plan {
        source: s.source.clone(),
        mem: ExtMemConfig {
            len: pool_plan.bytes,
            page_size,
            backing,
            iova_mode,
            allow_4k: m.allow_4k,
        },
        pool,
        pool_plan,
        free_pages,
        ports,
        rxq: f.rxq as u16,
        txq: f.txq as u16,
        rxd: f.rxd as u16,
        txd: f.txd as u16,
        burst: f.burst as usize,
        tx_retry: f.tx_retry,
        idle_sleep_ns: u64::from(f.idle_sleep_us) * 1000,
        latency: f.latency,
        tx_first: f.tx_first,
        topology,
        gen,
        lcores,
        l3fwd,
        run: RunSettings {
            stats_period: st.period,
            duration: st.duration,
            json: st.json,
            telemetry: st.telemetry.clone(),
            on_link_loss,
        },
    };
    if let Some(w) = plan.pool_warning() {
        log::warn!("{w}");
    }
    Ok(plan)
}

/// A pcap port reads its RX file at configure time, after memory is
/// allocated: read and parse it now so a bad file is a configuration error,
/// and check the TX file can be created.
fn precheck_pcap(devargs: &str) -> Result<(), xfwd_pmd::PortError> {
    use xfwd_pmd::PortError;
    let d = xfwd_pmd::Devargs::parse(devargs)?;
    let bad = |why: String| PortError::Format {
        port: devargs.to_string(),
        why,
    };
    if let Some(rx) = d.get("rx").or(d.get("rx_pcap")) {
        let data = std::fs::read(rx).map_err(|source| PortError::Io {
            port: devargs.to_string(),
            what: format!("reading capture {rx}"),
            source,
        })?;
        xfwd_pmd::pcap::Capture::parse(data).map_err(|e| bad(format!("{rx}: {e}")))?;
    }
    if let Some(tx) = d.get("tx").or(d.get("tx_pcap")) {
        let p = std::path::Path::new(tx);
        let dir = p
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(std::path::Path::new("."));
        if !dir.is_dir() || p.is_dir() {
            return Err(bad(format!(
                "tx file {tx}: its directory does not exist or it is a directory"
            )));
        }
    }
    Ok(())
}
