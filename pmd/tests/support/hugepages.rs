//! 2 MiB hugepage areas for tests. When too few pages are free, a user
//! raises `nr_hugepages`; the last user takes back exactly what this process
//! added (so a concurrent raise by someone else survives), never going below
//! the value seen first.

use std::sync::Mutex;

const NR: &str = "/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages";
const FREE: &str = "/sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages";
/// Size of one page.
pub const HUGE_2M: usize = 2 << 20;

struct State {
    holders: usize,
    original: Option<u64>,
    raised: u64,
}

static STATE: Mutex<State> = Mutex::new(State {
    holders: 0,
    original: None,
    raised: 0,
});

fn read(p: &str) -> u64 {
    std::fs::read_to_string(p)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

/// An anonymous `MAP_HUGETLB` mapping of whole 2 MiB pages; unmapped on drop,
/// after which the reservation it holds is released.
#[derive(Debug)]
pub struct HugeArea {
    ptr: *mut u8,
    len: usize,
}

// SAFETY: plain memory owned by this handle.
unsafe impl Send for HugeArea {}
// SAFETY: the handle gives out only raw addresses; users synchronise access.
unsafe impl Sync for HugeArea {}

impl HugeArea {
    /// Map `pages` 2 MiB pages, raising `nr_hugepages` if needed. `Err` says why it failed.
    pub fn new(pages: usize) -> Result<HugeArea, String> {
        {
            let mut st = STATE.lock().unwrap_or_else(|e| e.into_inner());
            if st.original.is_none() {
                st.original = Some(read(NR));
            }
            st.holders += 1;
            let free = read(FREE) as usize;
            if free < pages {
                let before = read(NR);
                let _ = std::fs::write(NR, (before + (pages - free) as u64).to_string());
                st.raised += read(NR).saturating_sub(before);
            }
        }
        let len = pages * HUGE_2M;
        // SAFETY: a fresh anonymous mapping; no existing memory is affected.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS | libc::MAP_HUGETLB | libc::MAP_POPULATE,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            let e = std::io::Error::last_os_error();
            release();
            return Err(format!(
                "mmap of {pages} 2 MiB hugepages failed ({e}); free: {}, nr: {}",
                read(FREE),
                read(NR)
            ));
        }
        Ok(HugeArea { ptr: p.cast(), len })
    }

    /// First byte.
    pub fn base(&self) -> usize {
        self.ptr as usize
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// The whole area as bytes.
    ///
    /// # Safety
    /// No kernel ring may be writing into the bytes read while the slice lives.
    pub unsafe fn bytes(&self) -> &[u8] {
        // SAFETY: the mapping is live for `self`'s lifetime; concurrency is the caller's contract.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }

    /// Copy `data` into the area at `off`.
    pub fn write(&self, off: usize, data: &[u8]) {
        assert!(off + data.len() <= self.len, "write beyond the area");
        // SAFETY: in bounds of the live mapping; the test owns this buffer (not on any ring).
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), self.ptr.add(off), data.len()) };
    }

    /// Copy `len` bytes from the area at `off`.
    pub fn read(&self, off: usize, len: usize) -> Vec<u8> {
        assert!(off + len <= self.len, "read beyond the area");
        // SAFETY: in bounds of the live mapping; the test owns this buffer (taken off a ring).
        unsafe { std::slice::from_raw_parts(self.ptr.add(off), len) }.to_vec()
    }
}

fn release() {
    let mut st = STATE.lock().unwrap_or_else(|e| e.into_inner());
    st.holders -= 1;
    if st.holders == 0 {
        if let Some(orig) = st.original.take() {
            let now = read(NR);
            let target = now.saturating_sub(st.raised).max(orig);
            if st.raised > 0 && target < now {
                let _ = std::fs::write(NR, target.to_string());
            }
        }
        st.raised = 0;
    }
}

impl Drop for HugeArea {
    fn drop(&mut self) {
        // SAFETY: our own mapping, unmapped once.
        unsafe { libc::munmap(self.ptr.cast(), self.len) };
        release();
    }
}

/// A page-aligned anonymous mapping of ordinary 4 KiB pages (copy-mode UMEM
/// works on them); unmapped on drop.
#[derive(Debug)]
pub struct Anon4k {
    ptr: *mut u8,
    len: usize,
}

// SAFETY: plain memory owned by this handle.
unsafe impl Send for Anon4k {}
// SAFETY: only raw addresses are handed out.
unsafe impl Sync for Anon4k {}

impl Anon4k {
    /// Map `len` bytes (rounded up to 4 KiB).
    pub fn new(len: usize) -> Anon4k {
        let len = len.div_ceil(4096) * 4096;
        // SAFETY: a fresh anonymous mapping.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
                -1,
                0,
            )
        };
        assert_ne!(
            p,
            libc::MAP_FAILED,
            "mmap: {}",
            std::io::Error::last_os_error()
        );
        Anon4k { ptr: p.cast(), len }
    }

    /// First byte.
    pub fn base(&self) -> usize {
        self.ptr as usize
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }
}

impl Drop for Anon4k {
    fn drop(&mut self) {
        // SAFETY: our own mapping, unmapped once.
        unsafe { libc::munmap(self.ptr.cast(), self.len) };
    }
}
