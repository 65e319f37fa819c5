//! External memory on real hugepages (root; CI reserves them).

use std::sync::Arc;
use xfwd_mempool::caps;
use xfwd_mempool::*;

const M2: usize = 2 << 20;

fn hp_cfg(pages: usize, backing: Backing, iova_mode: IovaMode) -> ExtMemConfig {
    ExtMemConfig {
        len: pages * M2,
        page_size: PageSize::Size2M,
        backing,
        iova_mode,
        allow_4k: false,
    }
}

fn roundtrip(mem: &ExtMem) {
    // Touch every page with a pattern and read it back.
    for p in 0..mem.pages() {
        let off = p * M2 + 4096 + p;
        let ptr = mem.as_ptr();
        #[allow(unsafe_code)]
        // SAFETY: off < len; the test owns the memory.
        unsafe {
            ptr.add(off).write_volatile(p as u8 ^ 0x5a);
            assert_eq!(ptr.add(off).read_volatile(), p as u8 ^ 0x5a);
        }
    }
}

fn hugetlb_in_use() -> u64 {
    extmem::total_hugepages(PageSize::Size2M) - extmem::free_hugepages(PageSize::Size2M)
}

#[test]
fn each_backing_on_2m_pages() {
    if !caps::require_root("2M hugepage backings")
        || !caps::require_hugepages_2m(16, "2M hugepage backings")
    {
        return;
    }
    for backing in [Backing::Anonymous, Backing::Memfd, Backing::Hugetlbfs(None)] {
        if backing == Backing::Hugetlbfs(None)
            && !caps::require(
                extmem::hugetlbfs_mount(PageSize::Size2M).is_some(),
                "hugetlbfs backing",
                "no 2M hugetlbfs mount (mount -t hugetlbfs nodev /dev/hugepages)",
            )
        {
            continue;
        }
        let mem = ExtMem::alloc(&hp_cfg(3, backing.clone(), IovaMode::Va)).unwrap();
        assert_eq!((mem.pages(), mem.len()), (3, 3 * M2));
        assert_eq!(mem.va() % M2, 0);
        assert_eq!(mem.iovas()[2], mem.va() as u64 + 2 * M2 as u64);
        assert_eq!(
            mem.fd().is_some(),
            matches!(backing, Backing::Memfd | Backing::Hugetlbfs(_)),
            "{backing:?}: only file-backed memory can be shared"
        );
        roundtrip(&mem);
        // Really hugepages: the kernel's counters show them in use.
        assert!(
            hugetlb_in_use() >= 3,
            "{backing:?}: hugetlb pages not in use"
        );
        if let Backing::Hugetlbfs(_) = backing {
            // The file was unlinked right after mmap.
            let dir = extmem::hugetlbfs_mount(PageSize::Size2M).unwrap();
            let left: Vec<_> = std::fs::read_dir(&dir)
                .unwrap()
                .filter_map(|e| e.ok())
                .filter(|e| {
                    e.file_name()
                        .to_string_lossy()
                        .starts_with(&format!("xfwd-{}-", std::process::id()))
                })
                .collect();
            assert!(left.is_empty(), "hugetlbfs files left: {left:?}");
        }
    }
}

#[test]
fn memfd_can_be_mapped_by_another_mapping() {
    if !caps::require_root("memfd sharing") || !caps::require_hugepages_2m(2, "memfd sharing") {
        return;
    }
    use std::os::fd::AsRawFd;
    let mem = ExtMem::alloc(&hp_cfg(1, Backing::Memfd, IovaMode::Va)).unwrap();
    #[allow(unsafe_code)]
    // SAFETY: write inside our own mapping.
    unsafe {
        mem.as_ptr().add(100).write_volatile(0xab)
    };
    let fd = mem.fd().unwrap().as_raw_fd();
    // Map it again through /proc/self/fd, as another process would.
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(format!("/proc/self/fd/{fd}"))
        .unwrap();
    #[allow(unsafe_code)]
    // SAFETY: a fresh shared read-only mapping of the memfd; unmapped below.
    unsafe {
        let p = libc::mmap(
            std::ptr::null_mut(),
            M2,
            libc::PROT_READ,
            libc::MAP_SHARED,
            f.as_raw_fd(),
            0,
        );
        assert_ne!(p, libc::MAP_FAILED);
        assert_eq!(*(p as *const u8).add(100), 0xab);
        libc::munmap(p, M2);
    }
}

#[test]
fn one_gig_pages_with_none_reserved_is_a_clear_error() {
    let free = extmem::free_hugepages(PageSize::Size1G);
    if !caps::require(
        free == 0,
        "1G error path",
        "1 GiB pages are reserved on this host",
    ) {
        return;
    }
    let e = ExtMem::alloc(&ExtMemConfig {
        len: 1 << 30,
        page_size: PageSize::Size1G,
        backing: Backing::Anonymous,
        iova_mode: IovaMode::Va,
        allow_4k: false,
    })
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("not enough 1G hugepages: 1 needed, 0 free"),
        "{e}"
    );
    assert!(e.contains("hugepages-1048576kB/nr_hugepages"), "{e}");
}

#[test]
fn exhaustion_names_size_needed_free_and_the_fix() {
    let free = extmem::free_hugepages(PageSize::Size2M);
    let want = free as usize + 5;
    let e = ExtMem::alloc(&hp_cfg(want, Backing::Anonymous, IovaMode::Va))
        .unwrap_err()
        .to_string();
    assert!(e.contains("not enough 2M hugepages"), "{e}");
    assert!(e.contains(&format!("{want} needed")), "{e}");
    assert!(e.contains("free"), "{e}");
    assert!(
        e.contains("scripts/hugepages reserve") && e.contains("hugepages-2048kB/nr_hugepages"),
        "{e}"
    );
}

#[test]
fn four_k_pages_only_when_allowed() {
    let mut cfg = ExtMemConfig {
        len: 64 << 10,
        page_size: PageSize::Size4K,
        backing: Backing::Anonymous,
        iova_mode: IovaMode::Va,
        allow_4k: false,
    };
    let e = ExtMem::alloc(&cfg).unwrap_err().to_string();
    assert!(e.contains("--allow-4k"), "{e}");
    cfg.allow_4k = true;
    let mem = ExtMem::alloc(&cfg).unwrap();
    assert_eq!(mem.pages(), 16);
}

#[test]
fn pa_mode_as_root_gives_real_physical_addresses() {
    if !caps::require_root("IOVA mode PA") || !caps::require_hugepages_2m(8, "IOVA mode PA") {
        return;
    }
    let mem = Arc::new(ExtMem::alloc(&hp_cfg(8, Backing::Anonymous, IovaMode::Pa)).unwrap());
    for (i, &pa) in mem.iovas().iter().enumerate() {
        assert_ne!(pa, 0);
        assert_eq!(
            pa % M2 as u64,
            0,
            "page {i}: a 2M hugepage is 2M aligned physically"
        );
        assert_ne!(pa, (mem.va() + i * M2) as u64, "PA equals VA?");
    }
    let contiguous = (0..mem.pages() - 1)
        .filter(|&i| mem.iova_contiguous_after(i))
        .count();
    eprintln!(
        "{contiguous}/{} adjacent page pairs physically contiguous",
        mem.pages() - 1
    );
    // A pool on it never lets an object cross a non-contiguous boundary and
    // records real physical buffer addresses.
    let reg = Registry::new();
    reg.register_mem(&mem).unwrap();
    let cfg = PoolConfig {
        name: "pa".into(),
        n: 4000,
        cache_size: 0,
        ..Default::default()
    };
    let pool = MbufPool::create(&cfg, mem.clone(), &reg).unwrap();
    let mut all = Vec::new();
    while let Some(m) = pool.alloc() {
        all.push(m);
    }
    for m in &all {
        let off = m.as_ptr().as_ptr() as usize - mem.va();
        let (p0, p1) = (off / M2, (off + cfg.obj_size() - 1) / M2);
        assert!(p0 == p1 || mem.iova_contiguous_after(p0));
        let boff = m.buf_addr() as usize - mem.va();
        assert_eq!(m.buf_iova(), mem.iovas()[boff / M2] + (boff % M2) as u64);
    }
    drop(all);
    pool.leak_check().unwrap();
}

/// Entry point for the child process of `pa_mode_without_cap_sys_admin_is_a_clear_error`;
/// does nothing unless that test spawns it.
#[test]
fn child_entry_pa_unprivileged() {
    if std::env::var_os("XFWD_PA_CHILD").is_none() {
        return;
    }
    let cfg = ExtMemConfig {
        len: 64 << 10,
        page_size: PageSize::Size4K,
        backing: Backing::Anonymous,
        iova_mode: IovaMode::Pa,
        allow_4k: true,
    };
    match ExtMem::alloc(&cfg) {
        Err(e) => println!("CHILD-ERROR: {e}"),
        Ok(m) => println!("CHILD-OK: {:#x}", m.iovas()[0]),
    }
}

#[test]
fn pa_mode_without_cap_sys_admin_is_a_clear_error() {
    if !caps::require_root("PFN-0 check (needs root to switch to an unprivileged uid)") {
        return;
    }
    use std::os::unix::process::CommandExt;
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_entry_pa_unprivileged",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("XFWD_PA_CHILD", "1")
        .uid(65534)
        .gid(65534)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("CHILD-ERROR")
            && stdout.contains("CAP_SYS_ADMIN")
            && stdout.contains("--iova-mode va"),
        "child output: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
