//! The router's configuration: `[l3fwd]`, `[[route]]`, `[[neighbor]]`,
//! `[[flow]]` in the TOML file, `--route`/`--neighbor`/`--flow`/
//! `--route-file` on the command line, and a route file (one entry a line).
//! Everything is checked before start; an error names the entry (the key
//! and index, the flag, or the file and line) and what is accepted.

use super::table::{Flow, Lookup, NextHop, Prefix, Tables};
use crate::error::ConfigError;
use serde::Deserialize;
use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

/// `[l3fwd]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct L3fwdCfg {
    /// `lpm` (default) or `em`.
    pub lookup: String,
    /// Verify IPv4 header checksums (bad ones are dropped as bad headers).
    pub check_checksum: bool,
    /// A route file: `PREFIX PORT [VIA]` or `SRC DST SPORT DPORT PROTO PORT` lines.
    pub route_file: Option<PathBuf>,
}

impl Default for L3fwdCfg {
    fn default() -> Self {
        L3fwdCfg {
            lookup: "lpm".into(),
            check_checksum: false,
            route_file: None,
        }
    }
}

/// `[[route]]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteCfg {
    /// `ADDR/LEN`.
    pub prefix: String,
    /// TX port (optional with `via`: the neighbour's port).
    #[serde(default)]
    pub port: Option<u32>,
    /// Gateway: a `[[neighbor]]` ip whose MAC becomes the destination.
    #[serde(default)]
    pub via: Option<String>,
}

/// `[[neighbor]]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NeighborCfg {
    /// Its address.
    pub ip: String,
    /// Its MAC.
    pub mac: String,
    /// The port it is on.
    pub port: u32,
}

/// `[[flow]]` (exact match).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlowCfg {
    /// Source address.
    pub src: String,
    /// Destination address.
    pub dst: String,
    /// Source port.
    #[serde(default)]
    pub sport: u32,
    /// Destination port.
    #[serde(default)]
    pub dport: u32,
    /// `udp`, `tcp`, `sctp`, `icmp`, `icmpv6` or a number.
    pub proto: String,
    /// TX port.
    pub port: u32,
    /// Gateway (a neighbour) instead of the port's next-hop MAC.
    #[serde(default)]
    pub via: Option<String>,
}

/// The command-line entries (each string as typed).
#[derive(Debug, Clone, Default)]
pub struct L3fwdFlags {
    /// `--route PREFIX,PORT[,VIA]`.
    pub routes: Vec<String>,
    /// `--neighbor IP,MAC,PORT`.
    pub neighbors: Vec<String>,
    /// `--flow SRC,DST,SPORT,DPORT,PROTO,PORT`.
    pub flows: Vec<String>,
}

/// A port as the router sees it: id, own MAC, next-hop MAC if configured.
#[derive(Debug, Clone, Copy)]
pub struct RouterPort {
    /// Port id.
    pub id: u16,
    /// Its MAC (source of forwarded frames).
    pub mac: [u8; 6],
    /// `--eth-dest` / `port.eth_peer`, when set.
    pub next_hop: Option<[u8; 6]>,
}

fn invalid(key: &str, value: impl ToString, accepted: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.to_string(),
        value: value.to_string(),
        accepted: accepted.into(),
    }
}

/// A route or flow before resolution.
#[derive(Debug, Clone)]
enum Entry {
    Route(Prefix),
    Flow(Flow),
}

#[derive(Debug, Clone)]
struct Item {
    origin: String,
    entry: Entry,
    port: Option<u32>,
    via: Option<IpAddr>,
}

fn parse_ip(origin: &str, s: &str) -> Result<IpAddr, ConfigError> {
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

fn parse_port16(origin: &str, what: &str, v: u32) -> Result<u16, ConfigError> {
    u16::try_from(v).map_err(|_| invalid(origin, format!("{what} {v}"), "0 ..= 65535"))
}

fn flow(
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
fn parse_line(origin: &str, line: &str, sep: char) -> Result<Item, ConfigError> {
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
fn read_file(path: &Path, items: &mut Vec<Item>) -> Result<(), ConfigError> {
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

/// Everything the router needs, from the file's sections and the flags.
#[derive(Debug, Clone, Copy)]
pub struct Sources<'a> {
    /// `[l3fwd]`.
    pub cfg: &'a L3fwdCfg,
    /// `[[route]]`.
    pub routes: &'a [RouteCfg],
    /// `[[neighbor]]`.
    pub neighbors: &'a [NeighborCfg],
    /// `[[flow]]`.
    pub flows: &'a [FlowCfg],
    /// The flags.
    pub flags: &'a L3fwdFlags,
    /// The config file's name (for messages).
    pub source: &'a str,
    /// The key naming `[l3fwd].lookup` (a flag or the file key).
    pub lookup_key: &'a str,
}

/// Build and check the tables for the forwarding `ports`.
///
/// # Errors
/// The first bad entry, named.
pub fn build(src: &Sources<'_>, ports: &[RouterPort]) -> Result<Tables, ConfigError> {
    let lookup = match src.cfg.lookup.as_str() {
        "lpm" => Lookup::Lpm,
        "em" => Lookup::Em,
        other => return Err(invalid(src.lookup_key, other, "lpm, em")),
    };
    let in_file = |k: String| format!("`{k}` (in {})", src.source);

    // Neighbours: ip → (mac, port, origin).
    let mut neigh: HashMap<IpAddr, ([u8; 6], u32, String)> = HashMap::new();
    let mut add_neigh = |origin: String, ip: &str, mac: &str, port: u32| {
        let ip = parse_ip(&origin, ip)?;
        let mac = xfwd_pmd::port::parse_mac(mac)
            .ok_or_else(|| invalid(&origin, mac, "a MAC like 02:00:00:00:00:01"))?;
        check_port(&origin, port, ports)?;
        if let Some((_, _, first)) = neigh.get(&ip) {
            return Err(invalid(
                &origin,
                ip,
                format!("each neighbour once (also {first})"),
            ));
        }
        neigh.insert(ip, (mac, port, origin));
        Ok::<(), ConfigError>(())
    };
    for (i, n) in src.neighbors.iter().enumerate() {
        add_neigh(in_file(format!("neighbor[{i}]")), &n.ip, &n.mac, n.port)?;
    }
    for n in &src.flags.neighbors {
        let origin = format!("`--neighbor {n}`");
        let f: Vec<&str> = n.split(',').map(str::trim).collect();
        let [ip, mac, port] = f[..] else {
            return Err(invalid(&origin, n, "IP,MAC,PORT"));
        };
        let port = port
            .parse()
            .map_err(|_| invalid(&origin, n, "IP,MAC,PORT with PORT a port id"))?;
        add_neigh(origin, ip, mac, port)?;
    }

    // Routes and flows, in order: file sections, route file, flags.
    let mut items = Vec::new();
    for (i, r) in src.routes.iter().enumerate() {
        let origin = in_file(format!("route[{i}]"));
        items.push(Item {
            entry: Entry::Route(
                Prefix::parse(&r.prefix).map_err(|why| invalid(&origin, &r.prefix, why))?,
            ),
            port: r.port,
            via: r.via.as_deref().map(|v| parse_ip(&origin, v)).transpose()?,
            origin,
        });
    }
    for (i, f) in src.flows.iter().enumerate() {
        let origin = in_file(format!("flow[{i}]"));
        let via = f.via.as_deref().map(|v| parse_ip(&origin, v)).transpose()?;
        let sp = parse_port16(&origin, "sport", f.sport)?.to_string();
        let dp = parse_port16(&origin, "dport", f.dport)?.to_string();
        items.push(flow(
            &origin,
            [&f.src, &f.dst, &sp, &dp, &f.proto],
            Some(f.port),
            via,
        )?);
    }
    if let Some(p) = &src.cfg.route_file {
        read_file(p, &mut items)?;
    }
    for r in &src.flags.routes {
        items.push(parse_line(&format!("`--route {r}`"), r, ',')?);
    }
    for r in &src.flags.flows {
        let it = parse_line(&format!("`--flow {r}`"), r, ',')?;
        if matches!(it.entry, Entry::Route(_)) {
            return Err(invalid(
                &it.origin,
                r,
                "SRC,DST,SPORT,DPORT,PROTO,PORT[,VIA]",
            ));
        }
        items.push(it);
    }
    if items.is_empty() {
        return Err(invalid(
            src.lookup_key,
            format!("{} with no route", src.cfg.lookup),
            "at least one [[route]] / [[flow]], --route, --flow or [l3fwd] route_file",
        ));
    }

    let max_id = ports.iter().map(|p| p.id).max().unwrap_or(0);
    let mut macs = vec![None; usize::from(max_id) + 1];
    let mut next_hops = vec![None; usize::from(max_id) + 1];
    for p in ports {
        macs[usize::from(p.id)] = Some(p.mac);
        next_hops[usize::from(p.id)] = p.next_hop;
    }
    let n_flows = items
        .iter()
        .filter(|i| matches!(i.entry, Entry::Flow(_)))
        .count();
    let mut t = Tables::new(lookup, macs, n_flows.max(16));
    t.check_checksum = src.cfg.check_checksum;
    t.port_next_hops = next_hops;
    let mut seen_routes: HashMap<Prefix, usize> = HashMap::with_capacity(items.len());
    let mut seen_flows: HashMap<Flow, usize> = HashMap::new();
    for (k, it) in items.iter().enumerate() {
        let hop = resolve(it, ports, &neigh)?;
        let r = match &it.entry {
            Entry::Route(p) => {
                if lookup == Lookup::Em {
                    return Err(invalid(
                        &it.origin,
                        p,
                        format!("a flow: {} is em (exact match on the 5-tuple), or set lookup = \"lpm\"", src.lookup_key),
                    ));
                }
                if let Some(first) = seen_routes.insert(*p, k) {
                    return Err(invalid(
                        &it.origin,
                        p,
                        format!(
                            "each prefix once (also {}; nested prefixes of other lengths are fine)",
                            items[first].origin
                        ),
                    ));
                }
                t.add_route(*p, hop)
            }
            Entry::Flow(f) => {
                if lookup == Lookup::Lpm {
                    return Err(invalid(
                        &it.origin,
                        f,
                        format!(
                            "a route PREFIX: {} is lpm, or set lookup = \"em\"",
                            src.lookup_key
                        ),
                    ));
                }
                if let Some(first) = seen_flows.insert(*f, k) {
                    return Err(invalid(
                        &it.origin,
                        f,
                        format!("each flow once (also {})", items[first].origin),
                    ));
                }
                t.add_flow(*f, hop)
            }
        };
        r.map_err(|e| invalid(&it.origin, "", format!("a table that takes it ({e})")))?;
    }
    Ok(t)
}

fn check_port(origin: &str, port: u32, ports: &[RouterPort]) -> Result<u16, ConfigError> {
    match ports.iter().find(|p| u32::from(p.id) == port) {
        Some(p) => Ok(p.id),
        None => Err(invalid(
            origin,
            format!("port {port}"),
            format!(
                "a forwarding port id: {:?}",
                ports.iter().map(|p| p.id).collect::<Vec<_>>()
            ),
        )),
    }
}

/// The next hop of an entry: the `via` neighbour's MAC, else the port's
/// next-hop MAC.
fn resolve(
    it: &Item,
    ports: &[RouterPort],
    neigh: &HashMap<IpAddr, ([u8; 6], u32, String)>,
) -> Result<NextHop, ConfigError> {
    if let Some(via) = it.via {
        let Some((mac, nport, norigin)) = neigh.get(&via) else {
            return Err(invalid(
                &it.origin,
                format!("via {via}"),
                "a gateway listed as a [[neighbor]] / --neighbor IP,MAC,PORT",
            ));
        };
        if let Some(p) = it.port.filter(|p| p != nport) {
            return Err(invalid(
                &it.origin,
                format!("port {p} via {via}"),
                format!("the neighbour's port {nport} ({norigin}), or no port"),
            ));
        }
        let port = check_port(&it.origin, *nport, ports)?;
        return Ok(NextHop { port, mac: *mac });
    }
    let Some(p) = it.port else {
        return Err(invalid(&it.origin, "no port", "a port, or via a neighbour"));
    };
    let port = check_port(&it.origin, p, ports)?;
    let rp = ports.iter().find(|x| x.id == port).expect("checked");
    match rp.next_hop {
        Some(mac) => Ok(NextHop { port, mac }),
        None => Err(invalid(
            &it.origin,
            format!("port {port} without a next hop"),
            format!(
                "a next-hop MAC for port {port}: `--eth-dest {port},MAC` (port[{port}].eth_peer), or `via` a neighbour"
            ),
        )),
    }
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

    fn ports() -> Vec<RouterPort> {
        vec![
            RouterPort {
                id: 0,
                mac: [2, 0, 0, 0, 0, 0xa0],
                next_hop: Some([2, 0, 0, 0, 0, 0xb0]),
            },
            RouterPort {
                id: 1,
                mac: [2, 0, 0, 0, 0, 0xa1],
                next_hop: None,
            },
        ]
    }

    fn build_with(routes: &[&str], neighbors: &[&str], lookup: &str) -> Result<Tables, String> {
        let cfg = L3fwdCfg {
            lookup: lookup.into(),
            ..Default::default()
        };
        let flags = L3fwdFlags {
            routes: routes.iter().map(|s| s.to_string()).collect(),
            neighbors: neighbors.iter().map(|s| s.to_string()).collect(),
            flows: Vec::new(),
        };
        build(
            &Sources {
                cfg: &cfg,
                routes: &[],
                neighbors: &[],
                flows: &[],
                flags: &flags,
                source: "test",
                lookup_key: "`--lookup`",
            },
            &ports(),
        )
        .map_err(|e| e.to_string())
    }

    #[test]
    fn good_tables_and_every_refusal_names_the_entry() {
        let t = build_with(
            &["10.0.0.0/8,0", "10.1.0.0/16,1,192.0.2.1", "2001:db8::/32,0"],
            &["192.0.2.1,02:00:00:00:00:c1,1"],
            "lpm",
        )
        .unwrap();
        assert_eq!(t.len(), 3);
        let v4 = t.v4.as_ref().unwrap();
        let h = &t.hops[v4.lookup(0x0a01_0203).unwrap() as usize];
        assert_eq!((h.port, h.mac), (1, [2, 0, 0, 0, 0, 0xc1]));
        let h = &t.hops[v4.lookup(0x0a02_0203).unwrap() as usize];
        assert_eq!((h.port, h.mac), (0, [2, 0, 0, 0, 0, 0xb0]));
        for (routes, neigh, want) in [
            (&["10.0.0.1/8,0"][..], &[][..], "host bits set"),
            (&["10.0.0.0/33,0"], &[], "prefix length"),
            (&["10.0.0.0/8,7"], &[], "a forwarding port id"),
            (&["10.0.0.0/8,1"], &[], "next-hop MAC for port 1"),
            (&["10.0.0.0/8,0", "10.0.0.0/8,0"], &[], "each prefix once"),
            (&["10.0.0.0/8,0,192.0.2.9"], &[], "listed as a [[neighbor]]"),
            (
                &["10.0.0.0/8,0,192.0.2.1"],
                &["192.0.2.1,02:00:00:00:00:c1,1"],
                "the neighbour's port 1",
            ),
            (&["10.0.0.0/8,0"], &["192.0.2.1,zz,1"], "a MAC like"),
            (&["10.0.0.0/8"], &[], "a route `PREFIX,PORT"),
            (&[], &[], "at least one"),
        ] {
            let e = build_with(routes, neigh, "lpm").unwrap_err();
            assert!(e.contains(want), "{routes:?}: {e}");
            if !routes.is_empty() {
                assert!(
                    e.contains("--route") || e.contains("--neighbor"),
                    "names the entry: {e}"
                );
            }
        }
        let e = build_with(&["10.0.0.0/8,0"], &[], "em").unwrap_err();
        assert!(e.contains("a flow"), "{e}");
        let e = build_with(&["10.0.0.0/8,0"], &[], "hash").unwrap_err();
        assert!(e.contains("lpm, em"), "{e}");
    }

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
