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
    let name = path.display().to_string();
    for (n, line) in text.lines().enumerate() {
        let line = match line.find('#') {
            Some(i) => &line[..i],
            None => line,
        }
        .trim();
        if line.is_empty() {
            continue;
        }
        let origin = format!("{name}:{}", n + 1);
        // The common `A.B.C.D/LEN PORT` line without the general parser
        // (1 M-route files); anything else, and every error, through it.
        let it = match fast_v4_route(line.as_bytes()) {
            Some((addr, len, port)) => Item {
                origin,
                entry: Entry::Route(Prefix {
                    addr: IpAddr::V4(addr.into()),
                    len,
                }),
                port: Some(port),
                via: None,
            },
            None => parse_line(&origin, line, ' ')?,
        };
        items.push(it);
    }
    Ok(())
}

/// `A.B.C.D/LEN PORT` (spaces between, as the general parser), host bits clear:
/// (address, length, port); None for anything else.
fn fast_v4_route(b: &[u8]) -> Option<(u32, u8, u32)> {
    let mut i = 0;
    // A decimal number of at most `digits` digits at `i`.
    let num = |i: &mut usize, digits: usize| -> Option<u32> {
        let start = *i;
        let mut v = 0u32;
        while *i < b.len() && b[*i].is_ascii_digit() && *i - start < digits {
            v = v * 10 + u32::from(b[*i] - b'0');
            *i += 1;
        }
        // No leading zeros (`010` is refused by the general parser).
        (*i > start && !(b[start] == b'0' && *i - start > 1)).then_some(v)
    };
    let mut addr = 0u32;
    for k in 0..4 {
        let o = num(&mut i, 3)?;
        if o > 255 {
            return None;
        }
        addr = addr << 8 | o;
        let sep = if k == 3 { b'/' } else { b'.' };
        if b.get(i) != Some(&sep) {
            return None;
        }
        i += 1;
    }
    let len = num(&mut i, 2)?;
    if len > 32 || b.get(i) != Some(&b' ') {
        return None;
    }
    while b.get(i) == Some(&b' ') {
        i += 1;
    }
    let port = num(&mut i, 5)?;
    if i != b.len() {
        return None;
    }
    let keep = if len == 0 { 0 } else { u32::MAX << (32 - len) };
    (addr & !keep == 0).then_some((addr, len as u8, port))
}

/// Parse a route or flow typed at run time (telemetry, the prompt), as in
/// a route file: `PREFIX PORT [VIA]` (or `PREFIX via VIA`), `SRC DST SPORT
/// DPORT PROTO PORT [VIA]`. The next hop is the `via` neighbour's (one of
/// the configuration's `[[neighbor]]` / `--neighbor`), else the port's
/// next-hop MAC. `what` (`route add`, `flow add`) names the entry in errors.
///
/// # Errors
/// A sentence naming the entry (`` `route add LINE` ``) and what is accepted.
pub fn runtime_entry(
    what: &str,
    line: &str,
    t: &Tables,
) -> Result<(Option<Prefix>, Option<Flow>, NextHop), String> {
    let origin = format!("`{what} {line}`");
    let f: Vec<&str> = line.split_whitespace().collect();
    let it = if f.len() == 3 && f[1].eq_ignore_ascii_case("via") {
        Item {
            origin: origin.clone(),
            entry: Entry::Route(
                Prefix::parse(f[0]).map_err(|why| invalid(&origin, line, why).to_string())?,
            ),
            port: None,
            via: Some(parse_ip(&origin, f[2]).map_err(|e| e.to_string())?),
        }
    } else {
        parse_line(&origin, line, ' ').map_err(|e| e.to_string())?
    };
    let hop = if let Some(via) = it.via {
        let Some((_, h)) = t.neighbors.iter().find(|(ip, _)| *ip == via) else {
            let known: Vec<String> = t.neighbors.iter().map(|(ip, _)| ip.to_string()).collect();
            return Err(invalid(
                &origin,
                format!("via {via}"),
                format!(
                    "a gateway configured as a [[neighbor]] / --neighbor (known: {})",
                    if known.is_empty() {
                        "none".into()
                    } else {
                        known.join(", ")
                    }
                ),
            )
            .to_string());
        };
        if let Some(p) = it.port.filter(|p| *p != u32::from(h.port)) {
            return Err(invalid(
                &origin,
                format!("port {p} via {via}"),
                format!("the neighbour's port {}, or `PREFIX via {via}`", h.port),
            )
            .to_string());
        }
        *h
    } else {
        let port = it.port.unwrap_or(0);
        let p16 = u16::try_from(port)
            .map_err(|_| invalid(&origin, format!("port {port}"), "a port id").to_string())?;
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
            .ok_or_else(|| {
                invalid(
                    &origin,
                    format!("port {port}"),
                    "a forwarding port with a next-hop MAC (--eth-dest), or `via` a neighbour",
                )
                .to_string()
            })?;
        NextHop { port: p16, mac }
    };
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

    #[test]
    fn the_fast_route_line_parser_agrees_with_the_general_one() {
        for l in [
            "10.0.0.0/8 0",
            "10.0.0.0/8\t1",
            "0.0.0.0/0 3",
            "255.255.255.255/32 65535",
            "198.51.100.0/24  1",
            "10.0.0.1/8 0",
            "10.0.0.0/33 0",
            "256.0.0.0/8 0",
            "010.0.0.0/8 0",
            "10.0.0/8 0",
            "10.0.0.0/8",
            "10.0.0.0/8 x",
            "10.0.0.0/8 0 192.0.2.1",
            "10.0.0.0 0",
            "2001:db8::/32 0",
        ] {
            let general = parse_line("x", l, ' ').ok().and_then(|it| match it.entry {
                Entry::Route(p) if it.via.is_none() => {
                    let IpAddr::V4(a) = p.addr else { return None };
                    Some((u32::from(a), p.len, it.port?))
                }
                _ => None,
            });
            let fast = fast_v4_route(l.as_bytes());
            // The fast path takes a subset (no bare hosts), never differs.
            assert!(
                fast.is_none() || fast == general,
                "{l}: {fast:?} vs {general:?}"
            );
            if l.contains('/')
                && !l.contains(':')
                && general.is_some()
                && l.split_whitespace().count() == 2
            {
                assert_eq!(fast, general, "{l}");
            }
        }
    }

    #[test]
    fn runtime_entries_take_via_and_errors_name_the_entry() {
        use crate::fwd::l3fwd::table::Lookup;
        let mut t = Tables::new(
            Lookup::Lpm,
            vec![Some([2, 0, 0, 0, 0, 0xa0]), Some([2, 0, 0, 0, 0, 0xa1])],
            16,
        );
        t.port_next_hops = vec![Some([2, 0, 0, 0, 0, 0xb0]), None];
        let gw = NextHop {
            port: 1,
            mac: [2, 0, 0, 0, 0, 0xc1],
        };
        t.neighbors = vec![("192.0.2.1".parse().unwrap(), gw)];
        let ok = |l: &str| runtime_entry("route add", l, &t).unwrap();
        assert_eq!(ok("10.0.0.0/8 1 192.0.2.1").2, gw);
        assert_eq!(ok("10.0.0.0/8 via 192.0.2.1").2, gw);
        assert_eq!(
            ok("10.0.0.0/8 0").2,
            NextHop {
                port: 0,
                mac: [2, 0, 0, 0, 0, 0xb0]
            }
        );
        let f = runtime_entry("flow add", "10.0.0.1 10.0.0.2 1 2 udp 1 192.0.2.1", &t).unwrap();
        assert!(f.1.is_some() && f.2 == gw);
        for (line, want) in [
            ("10.0.0.0/8 via 192.0.2.9", "known: 192.0.2.1"),
            ("10.0.0.0/8 0 192.0.2.1", "the neighbour's port 1"),
            ("10.0.0.0/8 1", "next-hop MAC"),
            ("10.0.0.0/8 7", "next-hop MAC"),
            ("10.0.0.1/8 0", "host bits"),
            ("10.0.0.0/8 via nowhere", "an IPv4 or IPv6 address"),
        ] {
            let e = runtime_entry("route add", line, &t).unwrap_err();
            assert!(
                e.contains(want) && e.contains(&format!("`route add {line}`")),
                "{line}: {e}"
            );
        }
    }
}
