//! The `xfwd-host` command line: `devbind`, `hugepages` and `apply`, text or JSON output.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use serde_json::{json, Value};

use crate::devbind::{self, BindOptions, BindOutcome, Category, Status};
use crate::error::HostError;
use crate::hostcfg::{self, HostConfig};
use crate::hugepages::{
    self, CommandMounter, HugeStatus, MountOutcome, MountOwner, Mounter, Reservation,
};
use crate::nics::XfwdSupport;
use crate::size::{format_size, parse_size};
use crate::sysfs::{RealSysfs, Sysfs};

const TOP_EXAMPLES: &str = "Examples:
  xfwd-host devbind --status
  xfwd-host hugepages setup 1G --page-size 2M
  xfwd-host apply configs/host.toml --dry-run";

const DEVBIND_EXAMPLES: &str = "Examples:
  Show network devices, their drivers and IOMMU groups:
      devbind --status            (add --json for a machine-readable listing)
  Bind eth1 to vfio-pci, giving /dev/vfio/N to user 1000:
      devbind --bind vfio-pci eth1 --uid 1000 --gid 1000
  See every sysfs write a bind would make, without making it:
      devbind --dry-run --bind vfio-pci 0000:02:00.0 0000:02:00.1
  Give a device back to its kernel driver:
      devbind --bind ixgbe 02:00.0
  Unbind a device from any driver:
      devbind --unbind 0000:01:00.0";

const HUGEPAGES_EXAMPLES: &str = "Examples:
  hugepages show
  hugepages reserve 1G --page-size 2M            (split across NUMA nodes)
  hugepages reserve 4G --page-size 1G --node 1
  hugepages mount /mnt/huge --page-size 2M --uid 1000 --gid 1000
  hugepages unmount /mnt/huge
  hugepages clear --page-size 2M                 (also removes files dead xfwd processes left)
  hugepages sweep                                (only that)
  hugepages setup 2G --page-size 1G              (clear + reserve + mount /dev/hugepages)";

/// `xfwd-host`: prepare a host for xfwd.
#[derive(Debug, Parser)]
#[command(name = "xfwd-host", version, about = "Prepare a host for xfwd: NIC binding with IOMMU-group checks, hugepages", after_help = TOP_EXAMPLES)]
pub struct Cli {
    /// Root of the filesystem holding sys/, proc/ and dev/ (tests point it at a fake tree).
    #[arg(long, global = true, default_value = "/", value_name = "DIR")]
    pub root: PathBuf,
    /// Print every change (sysfs write, chown, mkdir, mount) instead of making it.
    #[arg(long, global = true)]
    pub dry_run: bool,
    /// Machine-readable output on stdout (errors too: {"error": "..."}).
    #[arg(long, global = true)]
    pub json: bool,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show, bind and unbind PCI network devices (like dpdk-devbind.py).
    #[command(after_help = DEVBIND_EXAMPLES)]
    Devbind(DevbindArgs),
    /// Show, reserve, mount and clear hugepages (like dpdk-hugepages.py).
    #[command(after_help = HUGEPAGES_EXAMPLES)]
    Hugepages {
        /// Hugepage action.
        #[command(subcommand)]
        action: HugeAction,
    },
    /// Apply a host config file: hugepages, mounts, then device bindings.
    #[command(after_help = "Example:\n  xfwd-host apply /etc/xfwd/host.toml --dry-run")]
    Apply {
        /// The TOML file (see configs/host.toml).
        file: PathBuf,
    },
}

/// `devbind` arguments.
#[derive(Debug, Args)]
pub struct DevbindArgs {
    /// Print the status of network devices (the default when nothing else is asked).
    #[arg(short, long)]
    pub status: bool,
    /// List every PCI device, not only network controllers.
    #[arg(long)]
    pub all: bool,
    /// Bind the devices to DRIVER ("none" unbinds).
    #[arg(
        short,
        long,
        value_name = "DRIVER",
        conflicts_with = "unbind",
        requires = "devices"
    )]
    pub bind: Option<String>,
    /// Unbind the devices from their driver.
    #[arg(short, long, requires = "devices")]
    pub unbind: bool,
    /// Unbind active interfaces / bind into a non-viable IOMMU group anyway.
    #[arg(long)]
    pub force: bool,
    /// Owner to give /dev/vfio/N after binding to vfio-pci.
    #[arg(long)]
    pub uid: Option<u32>,
    /// Group to give /dev/vfio/N after binding to vfio-pci.
    #[arg(long)]
    pub gid: Option<u32>,
    /// PCI addresses (0000:01:00.0 or 01:00.0) or interface names.
    #[arg(value_name = "DEVICE")]
    pub devices: Vec<String>,
}

/// `hugepages` actions.
#[derive(Debug, Subcommand)]
pub enum HugeAction {
    /// Pools per page size and NUMA node, and hugetlbfs mounts.
    Show,
    /// Set the reservation to SIZE in total (split across NUMA nodes unless --node).
    Reserve(ReserveArgs),
    /// Release reserved pages (of one size with --page-size, else all sizes).
    Clear {
        /// Only this page size.
        #[arg(short, long)]
        page_size: Option<String>,
    },
    /// Remove hugetlbfs files (`xfwd-PID-N`) that dead xfwd processes left
    /// behind, holding their pages (`clear` does this first too).
    Sweep,
    /// Mount hugetlbfs.
    Mount(MountArgs),
    /// Unmount hugetlbfs.
    Unmount {
        /// Mount point.
        #[arg(default_value = "/dev/hugepages")]
        dir: String,
    },
    /// Clear pages of the size, reserve SIZE, mount on --dir.
    Setup {
        /// Reservation.
        #[command(flatten)]
        reserve: ReserveArgs,
        /// Mount point.
        #[arg(short, long, default_value = "/dev/hugepages")]
        dir: String,
        /// Mount owner.
        #[arg(long)]
        uid: Option<u32>,
        /// Mount group.
        #[arg(long)]
        gid: Option<u32>,
    },
}

/// Reservation arguments.
#[derive(Debug, Args)]
pub struct ReserveArgs {
    /// Total memory, e.g. 1G, 512M.
    pub size: String,
    /// Page size, e.g. 2M, 1G (default: the kernel's default hugepage size).
    #[arg(short, long)]
    pub page_size: Option<String>,
    /// Only on this NUMA node.
    #[arg(short, long)]
    pub node: Option<u32>,
}

/// Mount arguments.
#[derive(Debug, Args)]
pub struct MountArgs {
    /// Mount point (created if missing).
    #[arg(default_value = "/dev/hugepages")]
    pub dir: String,
    /// Page size of the mount.
    #[arg(short, long)]
    pub page_size: Option<String>,
    /// Owner.
    #[arg(long)]
    pub uid: Option<u32>,
    /// Group.
    #[arg(long)]
    pub gid: Option<u32>,
    /// Octal permissions, e.g. 770.
    #[arg(long)]
    pub mode: Option<String>,
}

fn size_arg(s: &Option<String>) -> Result<Option<u64>, HostError> {
    s.as_deref().map(parse_size).transpose()
}

/// Run the tool with these arguments; returns the process exit code.
pub fn main_with<I: IntoIterator<Item = OsString>>(args: I) -> i32 {
    let cli = match Cli::try_parse_from(args) {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { 2 } else { 0 };
        }
    };
    let fs = RealSysfs::new(&cli.root, cli.dry_run);
    run(&cli, &fs, &CommandMounter)
}

/// Run a parsed command against `fs` and `mounter`, printing the result; returns the exit code.
pub fn run(cli: &Cli, fs: &dyn Sysfs, mounter: &dyn Mounter) -> i32 {
    match execute(cli, fs, mounter) {
        Ok((value, text)) => {
            if cli.json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&value).unwrap_or_default()
                );
            } else {
                print!("{text}");
            }
            0
        }
        Err(e) => {
            if cli.json {
                println!("{}", json!({ "error": e.to_string() }));
            } else {
                eprintln!("error: {e}");
            }
            1
        }
    }
}

fn actions_text(fs: &dyn Sysfs) -> String {
    let prefix = if fs.dry_run() { "would " } else { "did " };
    fs.journal()
        .iter()
        .map(|a| format!("{prefix}{a}\n"))
        .collect()
}

fn with_actions(fs: &dyn Sysfs, mut v: Value) -> Value {
    v["dry_run"] = json!(fs.dry_run());
    v["actions"] = json!(fs.journal());
    v
}

type Output = (Value, String);

fn execute(cli: &Cli, fs: &dyn Sysfs, mounter: &dyn Mounter) -> Result<Output, HostError> {
    match &cli.command {
        Command::Devbind(a) => devbind_cmd(a, fs),
        Command::Hugepages { action } => hugepages_cmd(action, fs, mounter),
        Command::Apply { file } => {
            let cfg = HostConfig::load(file)?;
            let r = hostcfg::apply(fs, mounter, &cfg)?;
            let mut text = actions_text(fs);
            text.push_str(&reservations_text(fs, &r.reservations));
            for m in &r.mounts {
                text.push_str(&mount_line(fs, m));
            }
            text.push_str(&outcomes_text(&r.devices));
            Ok((with_actions(fs, json!(r)), text))
        }
    }
}

fn devbind_cmd(a: &DevbindArgs, fs: &dyn Sysfs) -> Result<Output, HostError> {
    let opts = BindOptions {
        force: a.force,
        uid: a.uid,
        gid: a.gid,
    };
    let outcomes = if let Some(driver) = &a.bind {
        Some(devbind::bind(fs, &a.devices, driver, &opts)?)
    } else if a.unbind {
        Some(devbind::unbind(fs, &a.devices, &opts)?)
    } else {
        None
    };
    match outcomes {
        Some(o) => {
            let text = format!("{}{}", actions_text(fs), outcomes_text(&o));
            Ok((with_actions(fs, json!({ "devices": o })), text))
        }
        None => {
            let s = devbind::status(fs, a.all);
            Ok((json!(s), status_text(&s)))
        }
    }
}

fn outcomes_text(o: &[BindOutcome]) -> String {
    let mut t = String::new();
    for d in o {
        let drv = |x: &Option<String>| x.clone().unwrap_or_else(|| "no driver".into());
        match &d.skipped {
            Some(why) => t.push_str(&format!("{}: {why}\n", d.pci)),
            None => t.push_str(&format!("{}: {} -> {}\n", d.pci, drv(&d.from), drv(&d.to))),
        }
        if let Some(n) = &d.vfio_node {
            t.push_str(&format!("{}: owner of {n} set\n", d.pci));
        }
        for w in &d.warnings {
            t.push_str(&format!("warning: {w}\n"));
        }
    }
    t
}

fn section(title: &str, lines: &[String]) -> String {
    let body = if lines.is_empty() {
        "<none>\n".to_string()
    } else {
        lines.iter().map(|l| format!("{l}\n")).collect()
    };
    format!("\n{title}\n{}\n{body}", "=".repeat(title.len()))
}

/// The `devbind --status` text.
pub fn status_text(s: &Status) -> String {
    let line = |d: &devbind::DeviceStatus| {
        let dev = &d.device;
        let mut l = format!(
            "{} '{} [{}:{}]'",
            dev.pci,
            dev.name.as_deref().unwrap_or("device"),
            dev.vendor,
            dev.device
        );
        if !dev.interfaces.is_empty() {
            l.push_str(&format!(" if={}", dev.interfaces.join(",")));
        }
        if let Some(drv) = &dev.driver {
            l.push_str(&format!(" drv={drv}"));
        }
        l.push_str(&format!(" unused={}", d.possible_drivers.join(",")));
        l.push_str(&format!(" xfwd={}", d.xfwd.short()));
        if let Some(n) = dev.numa_node {
            l.push_str(&format!(" numa_node={n}"));
        }
        if let Some(g) = &d.iommu_group_status {
            l.push_str(&format!(" iommu_group={}", g.number));
            if let Some(node) = &g.vfio_node {
                l.push_str(&format!(" {node}"));
            }
        }
        if d.active {
            l.push_str(" *Active*");
        }
        l
    };
    let pick = |c: Category| -> Vec<String> {
        s.devices
            .iter()
            .filter(|d| d.category == c)
            .map(line)
            .collect()
    };
    let mut t = section(
        "Network devices using a DPDK-compatible driver",
        &pick(Category::Dpdk),
    );
    t.push_str(&section(
        "Network devices using a kernel driver",
        &pick(Category::Kernel),
    ));
    t.push_str(&section(
        "Other network devices (no driver)",
        &pick(Category::Unbound),
    ));
    let mut io = vec![format!(
        "mode: {} ({} IOMMU groups), vfio-pci {}",
        serde_json::to_value(s.iommu.mode)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default(),
        s.iommu.groups,
        if s.iommu.vfio_pci_loaded {
            "loaded"
        } else {
            "not loaded"
        }
    )];
    io.extend(s.iommu.problems.iter().cloned());
    for d in &s.devices {
        if let Some(g) = d
            .iommu_group_status
            .as_ref()
            .filter(|g| g.members.len() > 1 || !g.viable)
        {
            let members: Vec<String> = g
                .members
                .iter()
                .map(|m| format!("{} ({})", m.pci, m.driver.as_deref().unwrap_or("no driver")))
                .collect();
            io.push(format!(
                "group {} of {}: {}; members: {}",
                g.number,
                d.device.pci,
                if g.viable {
                    "viable"
                } else {
                    "NOT viable for vfio"
                },
                members.join(", ")
            ));
        }
    }
    t.push_str(&section("IOMMU", &io));
    let xfwd: Vec<String> = s
        .devices
        .iter()
        .map(|d| {
            let dev = &d.device;
            match &d.xfwd {
                XfwdSupport::Vfio { driver, model } => {
                    format!("{}: vfio:{} ({driver} driver, {model})", dev.pci, dev.pci)
                }
                other => format!(
                    "warning: {}",
                    other
                        .bind_warning(&dev.pci, &dev.vendor, &dev.device)
                        .unwrap_or_default()
                ),
            }
        })
        .collect();
    t.push_str(&section("xfwd user-space drivers", &xfwd));
    t
}

fn reservations_text(fs: &dyn Sysfs, r: &[Reservation]) -> String {
    r.iter()
        .map(|r| {
            let node = r
                .node
                .map_or("all nodes".to_string(), |n| format!("node {n}"));
            let size = format_size(r.page_size);
            if fs.dry_run() {
                return format!("{node}: would reserve {} pages of {size}\n", r.asked);
            }
            format!(
                "{node}: {} pages of {size} asked, {} granted ({})\n",
                r.asked,
                r.granted,
                format_size(r.granted * r.page_size)
            )
        })
        .collect()
}

fn mount_line(fs: &dyn Sysfs, m: &MountOutcome) -> String {
    if fs.dry_run() && !m.already {
        return String::new();
    }
    let already = if m.already { "already mounted " } else { "" };
    format!(
        "hugetlbfs {already}on {} ({})\n",
        m.path.display(),
        m.options
    )
}

/// The `hugepages show` text.
pub fn huge_status_text(s: &HugeStatus) -> String {
    let mut t = String::from("Node Pages Free  Size Total\n");
    let pools = if s.nodes.is_empty() {
        &s.sizes
    } else {
        &s.nodes
    };
    for p in pools {
        let node = p.node.map_or("-".to_string(), |n| n.to_string());
        t.push_str(&format!(
            "{node:<4} {:<5} {:<5} {:<4} {}\n",
            p.total,
            p.free,
            format_size(p.page_size),
            if p.total == 0 {
                "0".to_string()
            } else {
                format_size(p.total * p.page_size)
            }
        ));
    }
    if let Some(d) = s.default_page_size {
        t.push_str(&format!("default page size: {}\n", format_size(d)));
    }
    if s.mounts.is_empty() {
        t.push_str("hugetlbfs: not mounted\n");
    }
    for m in &s.mounts {
        t.push_str(&format!("hugetlbfs on {} ({})\n", m.path, m.options));
    }
    t
}

fn hugepages_cmd(
    a: &HugeAction,
    fs: &dyn Sysfs,
    mounter: &dyn Mounter,
) -> Result<Output, HostError> {
    match a {
        HugeAction::Show => {
            let s = hugepages::show(fs);
            Ok((json!(s), huge_status_text(&s)))
        }
        HugeAction::Reserve(r) => {
            let res =
                hugepages::reserve(fs, parse_size(&r.size)?, size_arg(&r.page_size)?, r.node)?;
            let text = format!("{}{}", actions_text(fs), reservations_text(fs, &res));
            Ok((with_actions(fs, json!({ "reservations": res })), text))
        }
        HugeAction::Clear { page_size } => {
            let res = hugepages::clear(fs, size_arg(page_size)?)?;
            let text = format!("{}{}", actions_text(fs), reservations_text(fs, &res));
            Ok((with_actions(fs, json!({ "reservations": res })), text))
        }
        HugeAction::Sweep => {
            let removed = hugepages::sweep_stale_files(fs, None)?;
            let text = if removed.is_empty() {
                "no stale xfwd hugetlbfs files\n".to_string()
            } else {
                actions_text(fs)
            };
            Ok((with_actions(fs, json!({ "removed": removed })), text))
        }
        HugeAction::Mount(m) => {
            let mode = match &m.mode {
                Some(s) => Some(
                    u32::from_str_radix(s, 8).map_err(|_| HostError::InvalidSize {
                        input: s.clone(),
                        why: "mode must be octal, e.g. 770".into(),
                    })?,
                ),
                None => None,
            };
            let owner = MountOwner {
                uid: m.uid,
                gid: m.gid,
                mode,
            };
            let out = hugepages::mount(fs, mounter, &m.dir, size_arg(&m.page_size)?, owner)?;
            let text = format!("{}{}", actions_text(fs), mount_line(fs, &out));
            Ok((with_actions(fs, json!({ "mount": out })), text))
        }
        HugeAction::Unmount { dir } => {
            let done = hugepages::unmount(fs, mounter, dir)?;
            let text = format!(
                "{}{}\n",
                actions_text(fs),
                if done {
                    format!("unmounted {dir}")
                } else {
                    format!("{dir}: no hugetlbfs mounted there")
                }
            );
            Ok((with_actions(fs, json!({ "unmounted": done })), text))
        }
        HugeAction::Setup {
            reserve,
            dir,
            uid,
            gid,
        } => {
            let page = hugepages::pick_page_size(fs, size_arg(&reserve.page_size)?)?;
            let bytes = parse_size(&reserve.size)?;
            hugepages::unmount(fs, mounter, dir)?;
            hugepages::clear(fs, Some(page))?;
            let res = hugepages::reserve(fs, bytes, Some(page), reserve.node)?;
            let owner = MountOwner {
                uid: *uid,
                gid: *gid,
                mode: None,
            };
            let out = hugepages::mount(fs, mounter, dir, Some(page), owner)?;
            let text = format!(
                "{}{}{}",
                actions_text(fs),
                reservations_text(fs, &res),
                mount_line(fs, &out)
            );
            Ok((
                with_actions(fs, json!({ "reservations": res, "mount": out })),
                text,
            ))
        }
    }
}
