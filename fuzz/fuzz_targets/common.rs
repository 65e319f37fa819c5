//! What several targets share: a validated plan for a small data plane on
//! heap memory (no hugepages, no kernel objects), on the first allowed CPU.

use xfwd::config::{self, Settings};
use xfwd::plan::Plan;

/// The plan of `config` (a TOML text).
pub fn plan(config: &str) -> Plan {
    let mut cfg = config::parse(config, "fuzz").expect("config");
    let cpu = xfwd::cpu::allowed().first().copied().unwrap_or(0);
    cfg.fwd.lcores = Some(cpu.to_string());
    let s = Settings {
        cfg,
        source: "fuzz".into(),
        ..Default::default()
    };
    xfwd::validate::validate(&s).expect("plan")
}

/// Four ports (null, fault over null, a ring pair named `ring`) in `mode`,
/// on 512 heap mbufs.
pub fn config(mode: &str, ring: &str) -> String {
    format!(
        "[memory]\nbacking = \"heap\"\n[pool]\nnb_mbufs = 512\nmbcache = 32\n\
         [fwd]\nforward_mode = \"{mode}\"\nrxd = 64\ntxd = 64\n\
         [[port]]\ndevargs = \"null:size=64\"\n\
         [[port]]\ndevargs = \"fault:seed=3,rx_drop=0.5,inner=null:\"\n\
         [[port]]\ndevargs = \"ring:{ring}\"\n[[port]]\ndevargs = \"ring:{ring}\"\n"
    )
}
