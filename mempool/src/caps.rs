//! Capability checks shared by tests across the workspace.
//!
//! A test that needs root, hugepages, a network namespace or a tool calls
//! [`require`]. Outside CI a missing capability skips the test with a printed
//! reason; in CI (`CI=true`) a missing capability is a failure, because CI runs
//! as root with everything installed and a skip there would hide a regression.

/// True when running under CI (`CI=true` or `CI=1`).
pub fn in_ci() -> bool {
    matches!(std::env::var("CI").as_deref(), Ok("true") | Ok("1"))
}

/// True when the effective uid is 0.
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    #[allow(unsafe_code)]
    unsafe {
        libc::geteuid() == 0
    }
}

/// Decide whether a test that needs `what` can run.
///
/// Returns `true` when `available`. Otherwise prints `SKIP <what>: <why>` and
/// returns `false`, so the test can `return` early.
///
/// # Panics
/// When the capability is missing under CI: CI must run every test.
pub fn require(available: bool, what: &str, why: &str) -> bool {
    if available {
        return true;
    }
    if in_ci() {
        panic!("CI=true but {what} is not available: {why}");
    }
    eprintln!("SKIP {what}: {why}");
    false
}

/// [`require`] for root privileges.
pub fn require_root(what: &str) -> bool {
    require(is_root(), what, "needs root (run as root or in CI)")
}

/// [`require`] for at least `pages` free 2 MiB hugepages.
pub fn require_hugepages_2m(pages: u64, what: &str) -> bool {
    let free = crate::extmem::free_hugepages(crate::extmem::PageSize::Size2M);
    require(
        free >= pages,
        what,
        &format!(
            "needs {pages} free 2 MiB hugepages, {free} free \
             (reserve: echo 1024 > /sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages)"
        ),
    )
}

/// [`require`] for a command on PATH.
pub fn require_tool(tool: &str, what: &str) -> bool {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
        .unwrap_or(false);
    require(found, what, &format!("needs `{tool}` on PATH"))
}
