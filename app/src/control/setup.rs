//! Bring-up of run-time control: the options `--telemetry`,
//! `--telemetry-group`, `--metrics`, `-i` and `--cmdline-file` turned into a
//! [`Control`] before the data plane comes up.

use super::{metrics, prompt, Control};
use crate::plan::Plan;
use crate::telemetry::Telemetry;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

impl Control {
    /// Everything `--telemetry`, `--telemetry-group`, `--metrics`, `-i` and
    /// `--cmdline-file` ask for, before the data plane comes up. With `-i`
    /// the lcores wait for `start`, no periodic stats are printed,
    /// `--tx-first` waits for `start tx_first`, and the run has no
    /// duration unless `--duration` is given.
    ///
    /// # Errors
    /// [`crate::error::ConfigError`] for an unknown group, a bad address or
    /// an unreadable file (exit 2); [`crate::error::RunError`] when the
    /// socket, the endpoint or the prompt cannot be set up.
    pub fn setup(
        opts: &crate::cli::Opts,
        plan: &mut Plan,
        stop: &Arc<AtomicBool>,
    ) -> anyhow::Result<Control> {
        use crate::error::{ConfigError, RunError};
        let bad = |key: &str, value: &str, accepted: String| ConfigError::Invalid {
            key: key.into(),
            value: value.into(),
            accepted,
        };
        let gid = match &opts.telemetry_group {
            None => None,
            Some(g) => Some(match g.parse::<u32>() {
                Ok(n) => n,
                Err(_) => match nix::unistd::Group::from_name(g) {
                    Ok(Some(gr)) => gr.gid.as_raw(),
                    _ => {
                        return Err(bad(
                            "--telemetry-group",
                            g,
                            "an existing group name or gid".into(),
                        )
                        .into())
                    }
                },
            }),
        };
        if gid.is_some() && plan.run.telemetry.is_none() {
            return Err(bad(
                "--telemetry-group",
                opts.telemetry_group.as_deref().unwrap_or(""),
                "only with --telemetry PATH".into(),
            )
            .into());
        }
        let metrics_addr = match &opts.metrics {
            None => None,
            Some(m) => Some(metrics::parse_addr(m).map_err(|e| bad("--metrics", m, e))?),
        };
        if opts.interactive {
            plan.run.stats_period = 0.0;
            if opts.duration.is_none() {
                plan.run.duration = 0.0;
            }
        }
        if opts.interactive {
            plan.tx_first = false;
        }
        let mut c = Control::new(plan, stop, !opts.interactive);
        if let Some(f) = &opts.cmdline_file {
            c.load_script(f).map_err(|e| {
                bad(
                    "--cmdline-file",
                    &f.display().to_string(),
                    format!("a readable file ({e})"),
                )
            })?;
        }
        if let Some(p) = &plan.run.telemetry {
            c.server = Some(Telemetry::bind(
                p,
                gid,
                crate::telemetry::Limits::default(),
            )?);
        }
        if let Some(a) = metrics_addr {
            let m = metrics::Metrics::bind(a)?;
            eprintln!("xfwd: metrics on http://{}/metrics", m.addr);
            c.metrics = Some(m);
        }
        if opts.interactive {
            let (rx, h) = prompt::spawn().map_err(|source| RunError::Spawn {
                lcore: u32::MAX,
                source,
            })?;
            c.attach_prompt(rx);
            c.prompt_thread = Some(h);
        }
        Ok(c)
    }
}
