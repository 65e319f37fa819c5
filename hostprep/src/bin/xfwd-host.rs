//! `xfwd-host`: NIC binding, hugepages and host-config application (see `--help`).
#![deny(unsafe_code)]

fn main() {
    std::process::exit(xfwd_hostprep::cli::main_with(std::env::args_os()));
}
