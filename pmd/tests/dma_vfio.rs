//! VfioMapper policy over the fake type1 kernel layer: every refusal carries
//! the facts (ranges, numbers) and what to do.

use std::path::Path;
use std::sync::Arc;
use xfwd_pmd::dma::vfio::fake::FakeType1;
use xfwd_pmd::dma::vfio::{IovaRange, MemlockLimit, VfioBackend, PROVISIONAL_WINDOW};
use xfwd_pmd::dma::{
    iova_chunks, mapper_for, DeviceBinding, DmaError, DmaMapper, DmaRange, MapOrigin, MappingKind,
    MrTable, VfioContainerMapper,
};

const MB2: u64 = 2 << 20;
const VA: u64 = 0x7f00_0000_0000;

/// A container over a fake backend, with a handle to inspect the fake.
fn container(fake: FakeType1) -> (Arc<VfioContainerMapper>, Arc<FakeType1>) {
    let fake = Arc::new(fake);
    let c = VfioContainerMapper::with_backend(Box::new(Shared(Arc::clone(&fake))));
    (c, fake)
}

/// Lets the test keep a handle on the fake the container owns.
#[derive(Debug)]
struct Shared(Arc<FakeType1>);

impl VfioBackend for Shared {
    fn attach(&self, sysfs: &Path) -> Result<u32, DmaError> {
        self.0.attach(sysfs)
    }
    fn iommu_info(&self) -> Result<xfwd_pmd::dma::vfio::IommuInfo, DmaError> {
        self.0.iommu_info()
    }
    fn map_dma(&self, va: u64, iova: u64, len: u64) -> Result<(), i32> {
        self.0.map_dma(va, iova, len)
    }
    fn unmap_dma(&self, iova: u64, len: u64) -> Result<u64, i32> {
        self.0.unmap_dma(iova, len)
    }
    fn memlock_limit(&self) -> MemlockLimit {
        self.0.memlock_limit()
    }
}

fn attached(fake: FakeType1) -> (Arc<VfioContainerMapper>, Arc<FakeType1>) {
    let (c, f) = container(fake);
    c.attach(Path::new("/sys/bus/pci/devices/0000:00:03.0"))
        .expect("attach");
    (c, f)
}

fn msg(e: &DmaError) -> String {
    e.to_string()
}

#[test]
fn identical_already_mapped_is_accepted_and_shared_until_the_last_port_unmaps() {
    let (c, fake) = attached(FakeType1::new());
    c.attach(Path::new("/sys/bus/pci/devices/0000:00:04.0"))
        .expect("second group");
    assert_eq!(c.groups(), vec![0, 1]);
    let iova = c.alloc_iova(2 * MB2, MB2).expect("iova");
    let p0 = c.port_mapper("port0");
    let p1 = c.port_mapper("port1");

    let m0 = p0.dma_map(VA, iova, 2 * MB2).expect("port0 maps");
    assert_eq!(m0.origin, MapOrigin::New);
    let m1 = p1
        .dma_map(VA, iova, 2 * MB2)
        .expect("port1: identical is accepted");
    assert_eq!(m1.origin, MapOrigin::AlreadyMapped);
    assert_eq!(fake.kernel_mappings(), vec![(VA, iova, 2 * MB2)]);
    assert_eq!(
        fake.calls().0,
        1,
        "the identical mapping is not mapped twice"
    );
    assert_eq!(p1.translate(VA + 5), Some(iova + 5));

    p0.dma_unmap(VA, iova, 2 * MB2).expect("port0 releases");
    assert_eq!(fake.kernel_mappings().len(), 1, "port1 still uses it");
    p1.dma_unmap(VA, iova, 2 * MB2).expect("port1 unmaps");
    assert!(fake.kernel_mappings().is_empty());
    assert_eq!(fake.locked_bytes(), 0);
    assert_eq!(c.mapped_bytes(), 0);
    c.free_iova(iova, 2 * MB2).expect("free iova");
}

#[test]
fn a_different_mapping_over_the_same_iova_or_va_is_refused_with_both_ranges() {
    let (c, fake) = attached(FakeType1::new());
    let iova = c.alloc_iova(MB2, MB2).expect("iova");
    let p0 = c.port_mapper("port0");
    let p1 = c.port_mapper("port1");
    p0.dma_map(VA, iova, MB2).expect("map");

    // Another port, other memory at the same IOVA: the kernel would say EEXIST.
    let e = p1.dma_map(VA + MB2, iova, MB2).unwrap_err();
    assert!(
        matches!(e, DmaError::Conflict { space: "IOVA", .. }),
        "{e:?}"
    );
    let m = msg(&e);
    assert!(m.contains(&format!("va={:#x}", VA + MB2)), "{m}");
    assert!(m.contains(&format!("iova={iova:#x}")), "{m}");
    assert!(m.contains(&format!("va={VA:#x}")), "{m}");
    assert!(
        m.contains("identical") && m.contains("unmap the old mapping first"),
        "{m}"
    );

    // Same port, same memory at another IOVA.
    let e = p0.dma_map(VA, iova + MB2, MB2).unwrap_err();
    assert!(
        matches!(
            e,
            DmaError::Conflict {
                space: "virtual",
                ..
            }
        ),
        "{e:?}"
    );

    // Same IOVA, different length (a stale, larger mapping must not be accepted).
    let e = p1.dma_map(VA, iova, 2 * MB2).unwrap_err();
    assert!(msg(&e).contains("len=0x200000"), "{e}");
    assert_eq!(fake.kernel_mappings(), vec![(VA, iova, MB2)]);

    // A mapping someone made behind our back: EEXIST cannot be verified, so refused.
    let other = c.alloc_iova(MB2, MB2).expect("iova");
    fake.map_behind_the_back(VA + 8 * MB2, other, MB2)
        .expect("direct map");
    let e = p0.dma_map(VA + 8 * MB2, other, MB2).unwrap_err();
    let m = msg(&e);
    assert!(
        matches!(
            e,
            DmaError::Kernel {
                errno: libc::EEXIST,
                ..
            }
        ),
        "{e:?}"
    );
    assert!(
        m.contains("VFIO_IOMMU_MAP_DMA") && m.contains("cannot be verified"),
        "{m}"
    );
    p0.dma_unmap(VA, iova, MB2).expect("unmap");
}

#[test]
fn map_before_any_group_is_attached_says_so_and_does_not_reach_the_kernel() {
    let (c, fake) = container(FakeType1::new());
    let iova = c.alloc_iova(MB2, MB2).expect("provisional IOVA");
    assert!(PROVISIONAL_WINDOW.contains(iova, MB2), "{iova:#x}");
    let p = c.port_mapper("port0");
    let e = p.dma_map(VA, iova, MB2).unwrap_err();
    assert_eq!(
        e,
        DmaError::NoGroupAttached {
            range: DmaRange::new(VA, iova, MB2)
        }
    );
    let m = msg(&e);
    assert!(m.contains("no IOMMU group attached"), "{m}");
    assert!(m.contains("probe a vfio-pci port"), "{m}");
    assert!(m.contains(&format!("iova={iova:#x}")), "{m}");
    assert_eq!(fake.calls(), (0, 0));
    assert!(p.mappings().is_empty());

    // After attach the same IOVA (inside the reported ranges) maps.
    c.attach(Path::new("/sys/bus/pci/devices/0000:00:03.0"))
        .expect("attach");
    p.dma_map(VA, iova, MB2).expect("map after attach");
    p.dma_unmap(VA, iova, MB2).expect("unmap");
}

#[test]
fn partial_unmap_is_refused_and_leaves_the_mapping_whole() {
    let (c, fake) = attached(FakeType1::new());
    let iova = c.alloc_iova(4 * MB2, MB2).expect("iova");
    let p = c.port_mapper("port0");
    p.dma_map(VA, iova, 4 * MB2).expect("map");

    let e = p.dma_unmap(VA, iova, MB2).unwrap_err();
    assert!(matches!(e, DmaError::PartialUnmap { .. }), "{e:?}");
    let m = msg(&e);
    assert!(m.contains("refusing partial unmap"), "{m}");
    assert!(m.contains("len=0x800000"), "the mapped chunk is named: {m}");
    assert!(m.contains("unmap exactly the chunk that was mapped"), "{m}");

    let e = p.dma_unmap(VA + MB2, iova + MB2, MB2).unwrap_err();
    assert!(matches!(e, DmaError::PartialUnmap { .. }), "{e:?}");
    assert_eq!(fake.calls().1, 0, "refused before the kernel");
    assert_eq!(fake.kernel_mappings(), vec![(VA, iova, 4 * MB2)]);

    // The fake kernel itself refuses to split, like type1v2.
    assert_eq!(fake.unmap_dma(iova, MB2), Err(libc::EINVAL));
    assert_eq!(fake.unmap_dma(iova + MB2, 3 * MB2), Err(libc::EINVAL));

    // Unmapping something never mapped names what is mapped.
    let e = p
        .dma_unmap(VA + 64 * MB2, iova + 64 * MB2, MB2)
        .unwrap_err();
    let m = msg(&e);
    assert!(matches!(e, DmaError::NotMapped { .. }), "{e:?}");
    assert!(
        m.contains("not mapped") && m.contains(&format!("va={VA:#x}")),
        "{m}"
    );

    p.dma_unmap(VA, iova, 4 * MB2).expect("exact unmap");
    assert!(fake.kernel_mappings().is_empty());
}

#[test]
fn iova_exhaustion_reports_size_alignment_ranges_and_largest_free_block() {
    let fake = FakeType1::new().with_ranges(vec![IovaRange::new(0, 0x7f_ffff)]);
    let (c, _fake) = attached(fake);
    assert_eq!(c.iova_ranges(), vec![IovaRange::new(0, 0x7f_ffff)]);
    let a = c.alloc_iova(MB2, MB2).expect("first");
    assert_eq!(a, MB2, "IOVA 0 is never handed out");
    let b = c.alloc_iova(MB2, MB2).expect("second");
    let d = c.alloc_iova(MB2, MB2).expect("third");
    assert_eq!((b, d), (2 * MB2, 3 * MB2));
    let e = c.alloc_iova(MB2, MB2).unwrap_err();
    assert!(matches!(e, DmaError::IovaExhausted { .. }), "{e:?}");
    let m = msg(&e);
    assert!(m.contains("IOVA space exhausted"), "{m}");
    assert!(m.contains("0x200000 bytes aligned to 0x200000"), "{m}");
    assert!(m.contains("0x0..=0x7fffff"), "{m}");
    assert!(m.contains("0x600000 bytes already allocated"), "{m}");
    assert!(m.contains("largest free block 0x0"), "{m}");
    // Smaller alignment finds the pages below the first block.
    assert_eq!(c.alloc_iova(0x1000, 0x1000), Ok(0x1000));
    // Freed space is reused.
    c.free_iova(b, MB2).expect("free");
    assert_eq!(c.alloc_iova(MB2, MB2), Ok(b));
    let e = c.free_iova(b + 0x1000, MB2).unwrap_err();
    assert!(msg(&e).contains("not an IOVA allocation"), "{e}");
}

#[test]
fn memlock_limit_is_checked_before_the_kernel_with_how_to_raise_it() {
    let fake = FakeType1::new().with_memlock(MemlockLimit::Bytes(8 << 20));
    let (c, fake) = attached(fake);
    let p = c.port_mapper("port0");
    let a = c.alloc_iova(4 << 20, MB2).expect("iova");
    p.dma_map(VA, a, 4 << 20).expect("4 MiB fits in 8 MiB");
    let b = c.alloc_iova(8 << 20, MB2).expect("iova");
    let e = p.dma_map(VA + (64 << 20), b, 8 << 20).unwrap_err();
    assert!(matches!(e, DmaError::Memlock { .. }), "{e:?}");
    let m = msg(&e);
    assert!(m.contains("RLIMIT_MEMLOCK is 8388608 bytes"), "{m}");
    assert!(m.contains("needs 12582912 bytes"), "{m}");
    assert!(m.contains("4194304 already mapped + 8388608 new"), "{m}");
    assert!(
        m.contains("ulimit -l unlimited") && m.contains("ulimit -l 12288"),
        "{m}"
    );
    assert!(
        m.contains("LimitMEMLOCK=infinity") && m.contains("CAP_IPC_LOCK"),
        "{m}"
    );
    assert_eq!(
        fake.calls().0,
        1,
        "the failing map never reached the kernel"
    );
    assert_eq!(fake.locked_bytes(), 4 << 20);
    p.dma_unmap(VA, a, 4 << 20).expect("unmap");
}

#[test]
fn unmap_is_refused_while_pinned_by_a_started_port() {
    let (c, fake) = attached(FakeType1::new());
    let p = c.port_mapper("port0");
    let iova = c.alloc_iova(MB2, MB2).expect("iova");
    p.dma_map(VA, iova, MB2).expect("map");
    let pins = p.pin_all();
    assert_eq!(pins.len(), 1);
    assert_eq!(p.mappings()[0].pins, 1);
    let e = p.dma_unmap(VA, iova, MB2).unwrap_err();
    assert_eq!(
        e,
        DmaError::Busy {
            range: DmaRange::new(VA, iova, MB2),
            pins: 1
        }
    );
    let m = msg(&e);
    assert!(m.contains("still pinned by 1 user"), "{m}");
    assert!(m.contains("stop the port and return its mbufs"), "{m}");
    assert_eq!(fake.kernel_mappings().len(), 1);
    let e = c.free_iova(iova, MB2).unwrap_err();
    let m = msg(&e);
    assert!(
        m.contains("still mapped") && m.contains("port0") && m.contains("dma_unmap on every port"),
        "IOVAs in use cannot be freed: {m}"
    );
    drop(pins);
    p.dma_unmap(VA, iova, MB2).expect("unmap after stop");
    c.free_iova(iova, MB2).expect("free");
}

#[test]
fn iova_outside_reported_ranges_misalignment_efault_and_mapping_limit() {
    let fake = FakeType1::new()
        .with_dma_entry_limit(2)
        .with_valid_va(vec![(VA, 64 * MB2)]);
    let (c, fake) = attached(fake);
    let p = c.port_mapper("port0");

    // The x86 MSI window is not usable.
    let e = p.dma_map(VA, 0xfee0_0000, 0x1000).unwrap_err();
    assert!(matches!(e, DmaError::IovaOutOfRange { .. }), "{e:?}");
    let m = msg(&e);
    assert!(
        m.contains("0xfee00000..0xfee01000") && m.contains("0xfef00000..="),
        "{m}"
    );

    let e = p.dma_map(VA + 0x800, 0x1_0000_0000, 0x1000).unwrap_err();
    assert!(
        msg(&e).contains("multiples of the IOMMU page size 0x1000"),
        "{e}"
    );

    let e = p.dma_map(VA - MB2, 0x1_0000_0000, MB2).unwrap_err();
    assert!(
        matches!(
            e,
            DmaError::Kernel {
                errno: libc::EFAULT,
                ..
            }
        ),
        "{e:?}"
    );
    assert!(
        msg(&e).contains("not (all) mapped memory of this process"),
        "{e}"
    );
    // The failed map did not keep its implicit IOVA reservation.
    p.dma_map(VA, 0x1_0000_0000, MB2)
        .expect("same IOVA, valid memory");

    p.dma_map(VA + MB2, 0x1_0020_0000, MB2).expect("second");
    let e = p.dma_map(VA + 2 * MB2, 0x1_0040_0000, MB2).unwrap_err();
    assert_eq!(
        e,
        DmaError::MappingLimit {
            range: DmaRange::new(VA + 2 * MB2, 0x1_0040_0000, MB2),
            used: 2,
            limit: 2
        }
    );
    assert!(msg(&e).contains("dma_entry_limit"), "{e}");
    assert_eq!(fake.kernel_mappings().len(), 2);
}

#[test]
fn a_dropped_port_releases_its_share_of_the_container() {
    let (c, fake) = attached(FakeType1::new());
    let iova = c.alloc_iova(MB2, MB2).expect("iova");
    let p0 = c.port_mapper("port0");
    let p1 = c.port_mapper("port1");
    p0.dma_map(VA, iova, MB2).expect("map");
    p1.dma_map(VA, iova, MB2).expect("shared");
    drop(p0);
    assert_eq!(fake.kernel_mappings().len(), 1);
    drop(p1);
    assert!(fake.kernel_mappings().is_empty());
    assert_eq!(c.mapped_bytes(), 0);
}

#[test]
fn mapper_for_falls_back_to_the_vfio_container_for_vfio_pci_ports() {
    let (c, _fake) = attached(FakeType1::new());
    let vfio = DeviceBinding::VfioPci {
        sysfs: "/sys/bus/pci/devices/0000:00:03.0".into(),
    };
    let m = mapper_for("port0", &vfio, None, Some(&c)).expect("fallback");
    assert_eq!(m.kind(), MappingKind::Iommu);
    let own: Arc<dyn DmaMapper> = Arc::new(MrTable::new());
    let m = mapper_for("port0", &vfio, Some(own), Some(&c)).expect("own");
    assert_eq!(m.kind(), MappingKind::MemoryRegion);
    let m = mapper_for("port1", &DeviceBinding::Software, None, None).expect("soft");
    assert_eq!(m.kind(), MappingKind::None);
    let info = m.dma_map(VA, VA, MB2).expect("soft map");
    assert_eq!(info.origin, MapOrigin::New);
    assert!(
        m.dma_unmap(VA, VA, 0x1000).is_err(),
        "same exact-unmap rule"
    );
    m.dma_unmap(VA, VA, MB2).expect("soft unmap");
    let e = mapper_for("port2", &vfio, None, None).unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("bound to vfio-pci") && msg.contains("VfioContainerMapper::open"),
        "{msg}"
    );
}

#[test]
fn iova_chunks_split_a_region_where_iovas_are_not_contiguous() {
    let pg = MB2;
    let chunks = iova_chunks(
        VA,
        pg,
        &[0x1000_0000, 0x1020_0000, 0x5000_0000, 0x5020_0000],
    );
    assert_eq!(
        chunks,
        vec![
            DmaRange::new(VA, 0x1000_0000, 2 * pg),
            DmaRange::new(VA + 2 * pg, 0x5000_0000, 2 * pg)
        ]
    );
    assert!(iova_chunks(VA, pg, &[]).is_empty());
}

#[test]
fn provisional_iovas_outside_the_reported_ranges_fail_to_map_with_the_ranges_named() {
    // A 32-bit IOMMU: the provisional window (4 GiB..512 GiB) is outside it.
    let fake = FakeType1::new().with_ranges(vec![IovaRange::new(0, 0xffff_ffff)]);
    let (c, fake) = container(fake);
    let early = c.alloc_iova(MB2, MB2).expect("provisional");
    assert!(early >= 1 << 32);
    c.attach(Path::new("/sys/bus/pci/devices/0000:00:03.0"))
        .expect("attach");
    let p = c.port_mapper("port0");
    let e = p.dma_map(VA, early, MB2).unwrap_err();
    let m = msg(&e);
    assert!(matches!(e, DmaError::IovaOutOfRange { .. }), "{e:?}");
    assert!(
        m.contains("0x0..=0xffffffff") && m.contains("alloc_iova"),
        "{m}"
    );
    assert_eq!(fake.calls().0, 0);
    // Allocated after attach, the IOVA fits and maps.
    let late = c.alloc_iova(MB2, MB2).expect("in range");
    assert!(late < 1 << 32);
    p.dma_map(VA, late, MB2).expect("map");
    p.dma_unmap(VA, late, MB2).expect("unmap");
}
