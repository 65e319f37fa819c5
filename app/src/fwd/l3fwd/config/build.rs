//! Resolving the entries into tables: neighbours first, then routes and
//! flows in order (file sections, route file, flags), each checked against
//! the lookup, the forwarding ports and the entries before it.

use super::entry::{flow, parse_ip, parse_line, parse_port16, read_file, Entry, Item};
use super::{invalid, RouterPort, Sources};
use crate::error::ConfigError;
use crate::fwd::l3fwd::table::{Flow, Lookup, NextHop, Prefix, Tables};
use std::collections::HashMap;
use std::net::IpAddr;

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
    for (ip, (mac, port, _)) in &neigh {
        // Checked against the forwarding ports above.
        if let Ok(port) = u16::try_from(*port) {
            t.neighbors.push((*ip, NextHop { port, mac: *mac }));
        }
    }
    t.neighbors.sort_by_key(|(ip, _)| *ip);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fwd::l3fwd::config::{L3fwdCfg, L3fwdFlags};

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
}
