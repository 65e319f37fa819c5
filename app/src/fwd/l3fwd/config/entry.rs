//! One route or flow entry: a route-file line, a `--route`/`--flow`
//! value or a run-time command, parsed into an [`Item`] that still names
//! where it came from.

use super::invalid;
use crate::error::ConfigError;
use crate::fwd::l3fwd::table::{Flow, NextHop, Prefix, Tables};
use std::net::IpAddr;
use std::path::Path;

/// A route or flow before resolution.
#[derive(Debug, Clone)]
pub(super) enum Entry {
    Route(Prefix),
    Flow(Flow),
}

#[derive(Debug, Clone)]
pub(super) struct Item {
    pub(super) origin: String,
    pub(super) entry: Entry,
    pub(super) port: Option<u32>,
    pub(super) via: Option<IpAddr>,
}

pub(super) fn parse_ip(origin: &str, s: &str) -> Result<IpAddr, ConfigError> {
    s.trim()
        .parse()
        .map_err(|_| invalid(origin, s, "an IPv4 or IPv6 address"))
}

fn parse_proto(origin: &str, s: &str) -> Result<u8, ConfigError> {
    match s.trim().to_ascii_lowercase().as_str() {
        "udp" => Ok(17),
        "tcp" => Ok(6),
        "sctp" => Ok(132),
        "icmp" => Ok(1),
        "icmpv6" => Ok(58),
        n => n.parse().map_err(|_| {
            invalid(
                origin,
                s,
                "udp, tcp, sctp, icmp, icmpv6 or a protocol number 0..=255",
            )
        }),
    }
}

pub(super) fn parse_port16(origin: &str, what: &str, v: u32) -> Result<u16, ConfigError> {
    u16::try_from(v).map_err(|_| invalid(origin, format!("{what} {v}"), "0 ..= 65535"))
}

pub(super) fn flow(
    origin: &str,
    f: [&str; 5],
    port: Option<u32>,
    via: Option<IpAddr>,
) -> Result<Item, ConfigError> {
    let num = |what: &str, s: &str| -> Result<u16, ConfigError> {
        let v: u32 = s
            .trim()
            .parse()
            .map_err(|_| invalid(origin, format!("{what} {s}"), "0 ..= 65535"))?;
        parse_port16(origin, what, v)
    };
    let fl = Flow {
        src: parse_ip(origin, f[0])?,
        dst: parse_ip(origin, f[1])?,
        sport: num("source port", f[2])?,
        dport: num("destination port", f[3])?,
        proto: parse_proto(origin, f[4])?,
    };
    if fl.src.is_ipv4() != fl.dst.is_ipv4() {
        return Err(invalid(
            origin,
            fl,
            "source and destination of one family (both IPv4 or both IPv6)",
        ));
    }
    Ok(Item {
        origin: origin.to_string(),
        entry: Entry::Flow(fl),
        port,
        via,
    })
}

/// One line of a route file or one `--route`/`--flow` value, split on
/// `sep`: 2–3 fields are a route, 6–7 a flow.
pub(super) fn parse_line(origin: &str, line: &str, sep: char) -> Result<Item, ConfigError> {
    let f: Vec<&str> = line
        .split(sep)
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    let port = |s: &str| -> Result<u32, ConfigError> {
        s.parse()
            .map_err(|_| invalid(origin, line, "PORT is a port id (a number)"))
    };
    match f.len() {
        2 | 3 => Ok(Item {
            origin: origin.to_string(),
            entry: Entry::Route(
                Prefix::parse(f[0]).map_err(|why| invalid(origin, line, why))?,
            ),
            port: Some(port(f[1])?),
            via: f.get(2).map(|v| parse_ip(origin, v)).transpose()?,
        }),
        6 | 7 => flow(
            origin,
            [f[0], f[1], f[2], f[3], f[4]],
            Some(port(f[5])?),
            f.get(6).map(|v| parse_ip(origin, v)).transpose()?,
        ),
        _ => Err(invalid(
            origin,
            line,
            format!(
                "a route `PREFIX{sep}PORT[{sep}VIA]` or a flow `SRC{sep}DST{sep}SPORT{sep}DPORT{sep}PROTO{sep}PORT[{sep}VIA]`"
            ),
        )),
    }
}

/// Read a route file (`#` starts a comment).
///
/// # Errors
/// The file cannot be read, or a line is bad (named `FILE:LINE`).
pub(super) fn read_file(path: &Path, items: &mut Vec<Item>) -> Result<(), ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    items.reserve(text.len() / 20);
    for (n, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let origin = format!("{}:{}", path.display(), n + 1);
        items.push(parse_line(&origin, line, ' ')?);
    }
    Ok(())
}

/// Parse a route or flow typed at run time (telemetry), as in a route file.
///
/// # Errors
/// A sentence.
pub fn runtime_entry(
    line: &str,
    t: &Tables,
) -> Result<(Option<Prefix>, Option<Flow>, NextHop), String> {
    let it = parse_line("route", line, ' ').map_err(|e| e.to_string())?;
    let port = it.port.unwrap_or(0);
    let p16 = u16::try_from(port).map_err(|_| format!("port {port} is not a port id"))?;
    if it.via.is_some() {
        return Err("`via` is not taken at run time: give the port (its next-hop MAC)".into());
    }
    let mac = t
        .port_next_hops
        .get(usize::from(p16))
        .copied()
        .flatten()
        .filter(|_| {
            t.port_macs
                .get(usize::from(p16))
                .is_some_and(Option::is_some)
        })
        .ok_or_else(|| format!("port {port} is not a forwarding port with a next-hop MAC"))?;
    let hop = NextHop { port: p16, mac };
    Ok(match it.entry {
        Entry::Route(p) => (Some(p), None, hop),
        Entry::Flow(f) => (None, Some(f), hop),
    })
}

/// The flow of a `SRC DST SPORT DPORT PROTO PORT` line, if it is one.
pub(crate) fn parse_flow_line(line: &str) -> Option<Flow> {
    match parse_line("flow", line, ' ').ok()?.entry {
        Entry::Flow(f) => Some(f),
        Entry::Route(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_file_lines_are_named_by_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("r.txt");
        std::fs::write(
            &p,
            "# comment\n10.0.0.0/8 0\n\n198.18.0.1 198.51.100.1 9 9 udp 0\n10.0.0.300/8 0\n",
        )
        .unwrap();
        let mut items = Vec::new();
        let e = read_file(&p, &mut items).unwrap_err().to_string();
        assert!(e.contains("r.txt:5"), "{e}");
        assert_eq!(items.len(), 2);
        assert!(matches!(items[1].entry, Entry::Flow(f) if f.proto == 17 && f.dport == 9));
    }
}
