//! The exact capacity plan of an mbuf pool.
//!
//! testpmd sizes external memory as "objects × size + 128 MB"; we compute the
//! pages needed exactly, for the worst case the layout allows: when IOVAs of
//! consecutive pages may not be contiguous, no object may straddle a page
//! boundary, so each page holds `floor(page / obj)` objects.

use crate::error::PoolError;
use crate::extmem::PageSize;
use crate::mbuf::MBUF_HEADER_SIZE;

/// Largest per-lcore cache (DPDK's `RTE_MEMPOOL_CACHE_MAX_SIZE`).
pub const CACHE_MAX_SIZE: u32 = 512;

/// What a pool holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolConfig {
    /// Name (logs, stats, telemetry).
    pub name: String,
    /// Number of mbufs.
    pub n: u32,
    /// Data room after the headroom (bytes).
    pub data_room: u16,
    /// Headroom before the data (bytes).
    pub headroom: u16,
    /// Per-lcore cache size (0 = no cache); the flush threshold is 1.5×.
    pub cache_size: u32,
    /// Let an object straddle a page boundary where the IOVA is contiguous
    /// across it (VA mode). AF_XDP zero-copy and PA mode want `false`.
    pub allow_straddle: bool,
}

impl Default for PoolConfig {
    fn default() -> Self {
        PoolConfig {
            name: "mbuf_pool".into(),
            n: 8192,
            data_room: 2048,
            headroom: 128,
            cache_size: 256,
            allow_straddle: true,
        }
    }
}

impl PoolConfig {
    /// Bytes of one object: header + headroom + data room, rounded to 64.
    pub fn obj_size(&self) -> usize {
        (MBUF_HEADER_SIZE + self.headroom as usize + self.data_room as usize).next_multiple_of(64)
    }

    /// Check the configuration on its own.
    ///
    /// # Errors
    /// [`PoolError::Config`] naming the field, the value and what is accepted.
    pub fn validate(&self) -> Result<(), PoolError> {
        let bad = |field, value: String, accepted: String| {
            Err(PoolError::Config {
                field,
                value,
                accepted,
            })
        };
        if self.n == 0 || self.n > 1 << 30 {
            return bad("n", self.n.to_string(), "1 ..= 2^30 mbufs".into());
        }
        if self.data_room < 64 {
            return bad(
                "data_room",
                self.data_room.to_string(),
                ">= 64 bytes".into(),
            );
        }
        if self.headroom as u32 + self.data_room as u32 > u16::MAX as u32 {
            return bad(
                "headroom + data_room",
                format!("{}", self.headroom as u32 + self.data_room as u32),
                "<= 65535 bytes".into(),
            );
        }
        if self.cache_size > CACHE_MAX_SIZE {
            return bad(
                "cache_size",
                self.cache_size.to_string(),
                format!("0 ..= {CACHE_MAX_SIZE}"),
            );
        }
        if self.cache_size as u64 * 3 / 2 > self.n as u64 {
            return bad(
                "cache_size",
                self.cache_size.to_string(),
                format!(
                    "at most n / 1.5 = {} for n = {} (a cache may hold 1.5 × its size)",
                    self.n as u64 * 2 / 3,
                    self.n
                ),
            );
        }
        Ok(())
    }
}

/// The pages a pool needs, computed before allocating anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolPlan {
    /// Mbufs.
    pub n: u32,
    /// Bytes per object.
    pub obj_size: usize,
    /// Page size.
    pub page_size: PageSize,
    /// Objects per page when objects cannot straddle (`None`: they may).
    pub objs_per_page: Option<usize>,
    /// Pages needed.
    pub pages: usize,
    /// Bytes to allocate (`pages × page size`).
    pub bytes: usize,
    /// Bytes of objects (the rest is padding at page ends).
    pub used_bytes: usize,
}

impl PoolPlan {
    /// Plan `cfg` on pages of `page_size`. `iova_contiguous` says whether
    /// IOVAs are known to be contiguous across pages (VA mode, assigned IOVAs).
    ///
    /// # Errors
    /// An invalid config, or an object larger than a page when it cannot
    /// straddle.
    pub fn compute(
        cfg: &PoolConfig,
        page_size: PageSize,
        iova_contiguous: bool,
    ) -> Result<PoolPlan, PoolError> {
        cfg.validate()?;
        let obj = cfg.obj_size();
        let ps = page_size.bytes();
        let n = cfg.n as usize;
        let straddle = cfg.allow_straddle && iova_contiguous;
        let (objs_per_page, pages) = if straddle {
            (None, (n * obj).div_ceil(ps))
        } else {
            let per = ps / obj;
            if per == 0 {
                return Err(PoolError::Config {
                    field: "data_room",
                    value: cfg.data_room.to_string(),
                    accepted: format!(
                        "an object of {obj} B (header {MBUF_HEADER_SIZE} + headroom {} + data room {}) \
                         must fit in one {page_size} page when IOVAs are not contiguous; \
                         use larger pages or IOVA mode va",
                        cfg.headroom, cfg.data_room
                    ),
                });
            }
            (Some(per), n.div_ceil(per))
        };
        Ok(PoolPlan {
            n: cfg.n,
            obj_size: obj,
            page_size,
            objs_per_page,
            pages,
            bytes: pages * ps,
            used_bytes: n * obj,
        })
    }
}

impl std::fmt::Display for PoolPlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} mbufs × {} B = {} B on {} pages of {} ({} B",
            self.n, self.obj_size, self.used_bytes, self.pages, self.page_size, self.bytes
        )?;
        match self.objs_per_page {
            Some(p) => write!(f, ", {p} per page, none straddles a page)"),
            None => write!(f, ", objects may straddle IOVA-contiguous pages)"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_is_exact() {
        let cfg = PoolConfig {
            n: 8192,
            ..Default::default()
        };
        assert_eq!(cfg.obj_size(), 2304);
        let p = PoolPlan::compute(&cfg, PageSize::Size2M, false).unwrap();
        // 2 MiB / 2304 = 910 objects per page; 8192 / 910 → 10 pages (9 hold 8190).
        assert_eq!(p.objs_per_page, Some(910));
        assert_eq!(p.pages, 10);
        let p = PoolPlan::compute(&cfg, PageSize::Size2M, true).unwrap();
        assert_eq!(p.pages, (8192usize * 2304).div_ceil(2 << 20));
        let p = PoolPlan::compute(&cfg, PageSize::Size4K, false).unwrap();
        assert_eq!((p.objs_per_page, p.pages), (Some(1), 8192));
    }

    #[test]
    fn config_errors_name_the_field() {
        let e = PoolPlan::compute(
            &PoolConfig {
                data_room: 9000,
                ..Default::default()
            },
            PageSize::Size4K,
            false,
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("data_room") && e.contains("9000") && e.contains("4K"),
            "{e}"
        );
        let e = PoolConfig {
            n: 100,
            cache_size: 256,
            ..Default::default()
        }
        .validate()
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("cache_size") && e.contains("256") && e.contains("66"),
            "{e}"
        );
    }
}
