#!/usr/bin/env python3
"""Write the seed corpus of every fuzz target into fuzz/corpus/<target>/.

Deterministic; run it again after changing it (`python3 fuzz/make_seeds.py`).
The seeds are small valid inputs (and a few near misses) that lead the
fuzzer into each parser's deeper paths.
"""
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def put(target, name, data):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def csum(b):
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while s > 0xFFFF:
        s = (s & 0xFFFF) + (s >> 16)
    return (~s) & 0xFFFF


MAC_A = bytes([2, 0, 0, 0, 0, 0xA])
MAC_B = bytes([2, 0, 0, 0, 0, 0xB])
BCAST = b"\xff" * 6


def eth(dst, src, etype, payload):
    return dst + src + struct.pack("!H", etype) + payload


def ipv4(proto, payload, src=b"\x0a\0\0\x01", dst=b"\x0a\0\0\x02", pad=0):
    h = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 1, 0, 64, proto, 0, src, dst)
    h = h[:10] + struct.pack("!H", csum(h)) + h[12:]
    return h + payload + b"\0" * pad


def icmp_echo(t, payload=b"xfwd-seed"):
    m = struct.pack("!BBHHH", t, 0, 0, 0x1234, 1) + payload
    return m[:2] + struct.pack("!H", csum(m)) + m[4:]


def udp(sport, dport, payload):
    return struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload


def ipv6(nh, payload, src=b"\xfd" + b"\0" * 14 + b"\x01", dst=b"\xfd" + b"\0" * 14 + b"\x02"):
    return struct.pack("!IHBB", 6 << 28, len(payload), nh, 64) + src + dst + payload


def icmp6_echo(src, dst, t=128):
    m = struct.pack("!BBHHH", t, 0, 0, 7, 1) + b"ping6"
    pseudo = src + dst + struct.pack("!IxxxB", len(m), 58)
    return m[:2] + struct.pack("!H", csum(pseudo + m)) + m[4:]


def arp(op, sha, spa, tha, tpa):
    return struct.pack("!HHBBH", 1, 0x0800, 6, 4, op) + sha + spa + tha + tpa


S6 = b"\xfd" + b"\0" * 14 + b"\x01"
D6 = b"\xfd" + b"\0" * 14 + b"\x02"
FRAMES = {
    "arp_request": eth(BCAST, MAC_A, 0x0806, arp(1, MAC_A, b"\x0a\0\0\x01", b"\0" * 6, b"\x0a\0\0\x02")),
    "arp_reply": eth(MAC_B, MAC_A, 0x0806, arp(2, MAC_A, b"\x0a\0\0\x01", MAC_B, b"\x0a\0\0\x02")),
    "icmp4_echo": eth(MAC_B, MAC_A, 0x0800, ipv4(1, icmp_echo(8))),
    "icmp4_echo_padded": eth(MAC_B, MAC_A, 0x0800, ipv4(1, icmp_echo(8, b""), pad=10)),
    "icmp4_reply": eth(MAC_B, MAC_A, 0x0800, ipv4(1, icmp_echo(0))),
    "udp4": eth(MAC_B, MAC_A, 0x0800, ipv4(17, udp(9, 9, b"payload"))),
    "tcp4": eth(MAC_B, MAC_A, 0x0800, ipv4(6, struct.pack("!HHIIBBHHH", 1234, 80, 1, 0, 0x50, 2, 1024, 0, 0))),
    "icmp6_echo": eth(MAC_B, MAC_A, 0x86DD, ipv6(58, icmp6_echo(S6, D6), S6, D6)),
    "udp6": eth(MAC_B, MAC_A, 0x86DD, ipv6(17, udp(4000, 53, b"q"))),
    "vlan": eth(MAC_B, MAC_A, 0x8100, b"\x00\x05\x08\x00" + ipv4(17, udp(1, 2, b""))),
    "runt": MAC_B + MAC_A[:3],
}


def pcap(frames, be=False, nanos=False, snaplen=65535):
    e = ">" if be else "<"
    magic = 0xA1B23C4D if nanos else 0xA1B2C3D4
    out = struct.pack(e + "IHHiIII", magic, 2, 4, 0, 0, snaplen, 1)
    for i, f in enumerate(frames):
        out += struct.pack(e + "IIII", 1_700_000_000 + i, 500 + i, len(f), len(f)) + f
    return out


def ng_block(e, btype, body):
    body += b"\0" * (-len(body) % 4)
    n = 12 + len(body)
    return struct.pack(e + "II", btype, n) + body + struct.pack(e + "I", n)


def ng_opt(e, code, val):
    return struct.pack(e + "HH", code, len(val)) + val + b"\0" * (-len(val) % 4)


def pcapng(frames, be=False, tsresol=None, tsoffset=None):
    e = ">" if be else "<"
    shb = ng_block(e, 0x0A0D0D0A, struct.pack(e + "IHHq", 0x1A2B3C4D, 1, 0, -1))
    opts = b""
    if tsresol is not None:
        opts += ng_opt(e, 9, bytes([tsresol]))
    if tsoffset is not None:
        opts += ng_opt(e, 14, struct.pack(e + "q", tsoffset))
    if opts:
        opts += ng_opt(e, 0, b"")
    idb = ng_block(e, 1, struct.pack(e + "HHI", 1, 0, 65535) + opts)
    out = shb + idb
    for i, f in enumerate(frames):
        ts = 1_700_000_000_000_000 + i
        if i % 2 == 0:
            out += ng_block(e, 6, struct.pack(e + "IIIII", 0, ts >> 32, ts & 0xFFFFFFFF, len(f), len(f)) + f)
        else:
            out += ng_block(e, 3, struct.pack(e + "I", len(f)) + f)
    out += ng_block(e, 0xBAD, b"unknown block, skipped")
    return out


def seeds_pcap():
    fr = [FRAMES["udp4"], FRAMES["arp_request"], FRAMES["icmp6_echo"]]
    put("pcap", "pcap_le_us", pcap(fr))
    put("pcap", "pcap_be_us", pcap(fr, be=True))
    put("pcap", "pcap_le_ns", pcap(fr, nanos=True))
    put("pcap", "pcap_be_ns", pcap(fr, be=True, nanos=True))
    put("pcap", "pcap_snaplen_64", pcap(fr, snaplen=64))
    put("pcap", "pcap_empty", pcap([]))
    put("pcap", "pcap_truncated", pcap(fr)[:-5])
    put("pcap", "pcapng_le", pcapng(fr))
    put("pcap", "pcapng_be", pcapng(fr, be=True))
    put("pcap", "pcapng_tsresol_ns", pcapng(fr, tsresol=9, tsoffset=10))
    put("pcap", "pcapng_tsresol_pow2", pcapng(fr, be=True, tsresol=0x80 | 20))
    put("pcap", "pcapng_two_sections", pcapng(fr[:1]) + pcapng(fr[1:], be=True))


def seeds_devargs():
    for i, s in enumerate([
        "null:", "null:size=64,copy=1", "net_null", "ring:r0", "ring:r0,loop=1",
        "pcap:rx=in.pcap,tx=out.pcap,loop=3,snaplen=128", "pcap:rx_pcap=a.pcap,infinite_rx=1",
        "af_xdp:iface=veth0,queues=2,mode=skb,zero_copy=0,busy_poll=20,tx_kick_batch=8",
        "af_packet:iface=eth1,qpairs=2,framesz=2048,framecnt=512,qdisc_bypass=1,fanout=hash",
        "vfio:0000:00:03.0", "fault:seed=7,rx_drop=0.01,rx_corrupt=0.1,rx_truncate=0.2,rx_short=0.3,tx_full=0.5,inner=null:",
        "fault:seed=1,inner=fault:rx_drop=1,inner=ring:x", " null: ", "x:a,b", "null:k=,=v",
    ]):
        put("devargs", "d%02d" % i, s)


def seeds_config():
    for name in sorted(os.listdir(os.path.join(ROOT, "configs"))):
        if name.endswith(".toml"):
            with open(os.path.join(ROOT, "configs", name), "rb") as f:
                put("config", name, f.read())
    put("config", "null_chained.toml", """
[memory]
backing = "heap"
[pool]
nb_mbufs = 4096
[fwd]
forward_mode = "5tswap"
port_topology = "chained"
rxq = 2
txq = 2
burst = 64
tx_retry = 3
idle_sleep_us = 10
[[port]]
devargs = "null:size=128"
[[port]]
devargs = "fault:seed=2,tx_full=0.5,inner=null:"
[[port]]
devargs = "ring:c"
[[port]]
devargs = "ring:c"
""")
    put("config", "txonly_mix.toml", """
[memory]
backing = "heap"
[fwd]
forward_mode = "txonly"
[txonly]
pkt_len = 128
flows = 4
[[port]]
devargs = "null:"
eth_peer = "02:00:00:00:00:02"
""")


def seeds_fwd_edit():
    for name, f in FRAMES.items():
        put("fwd_edit", name, f)


def seeds_telemetry():
    put("telemetry", "all", "\n".join([
        "/ports", "/ports/0/stats", "/ports/1/xstats", "/ports/3/stats/", "/lcores",
        "/mempool", "/dma", "/help", "", "/ports/9/stats", "/nope",
    ]) + "\n")
    put("telemetry", "one", "/ports/2/xstats\n")


def memif_msg(t, body=b""):
    m = struct.pack("<H", t) + body
    return m + b"\0" * (128 - len(m))


def name_field(s, n=32):
    return s.encode() + b"\0" * (n - len(s))


def seeds_memif_msg():
    put("memif_msg", "ack", memif_msg(1))
    put("memif_msg", "hello", memif_msg(2, name_field("xfwd memif0") + struct.pack("<HHHHHB", 0x200, 0x200, 255, 0, 0, 14)))
    put("memif_msg", "init", memif_msg(3, struct.pack("<HIB", 0x200, 0, 0) + b"secret".ljust(24, b"\0") + name_field("client")))
    put("memif_msg", "add_region", memif_msg(4, struct.pack("<HQ", 0, 1 << 21)))
    put("memif_msg", "add_ring_c2s", memif_msg(5, struct.pack("<HHHIBH", 1, 0, 0, 0, 10, 0)))
    put("memif_msg", "add_ring_s2c", memif_msg(5, struct.pack("<HHHIBH", 0, 0, 0, 16512, 10, 0)))
    put("memif_msg", "connect", memif_msg(6, name_field("memif0")))
    put("memif_msg", "connected", memif_msg(7, name_field("xfwd memif0")))
    put("memif_msg", "disconnect", memif_msg(8, struct.pack("<I", 1) + name_field("Invalid message size 64", 96)))
    put("memif_msg", "unknown_type", memif_msg(9))
    put("memif_msg", "short", memif_msg(2)[:64])
    put("memif_msg", "name_unterminated", memif_msg(6, b"x" * 32))


def seeds_control():
    put("control", "show", "\n".join([
        "show port stats all", "show port xstats 1", "show port info all", "show fwd stats all",
        "show config fwd", "show mempool", "show dma", "show lcores", "show capture", "help",
    ]) + "\n")
    put("control", "set", "\n".join([
        "set fwd macswap", "set burst 64", "set txpkts 128", "set eth-peer 0 02:00:00:00:00:01",
        "set rate 200k", "set rate off", "port stop 1", "port start all", "clear port stats all",
        "clear fwd stats all", "set fwd l3fwd", "set burst 0",
    ]) + "\n")
    put("control", "run", "start\nstop\nstart tx_first\nquit\n")
    put("control", "capture", "capture 0 rx --count 10 -w cap.pcapng\nshow capture\ncapture stop\n"
        "capture 2:0 both -c 1\n")
    put("control", "legacy", "/ports\n/ports/0/stats\n/lcores\n/mempool\n")
    put("control", "errors", "bogus\nshow\nshow port stats 9\n\r\n   \nset\n")
    put("control", "too_long", "show mempool\n" + "x" * 5000 + "\nshow dma\n")


def seeds_memif_session():
    init = memif_msg(3, struct.pack("<HIB", 0x200, 9, 0) + b"\0" * 24 + name_field("fuzz"))
    region = memif_msg(4, struct.pack("<HQ", 0, 65536))
    c2s = memif_msg(5, struct.pack("<HHHIBH", 1, 0, 0, 0, 4, 0))
    s2c = memif_msg(5, struct.pack("<HHHIBH", 0, 0, 0, 4096, 4, 0))
    connect = memif_msg(6, name_field("fuzz"))
    put("memif_session", "handshake", init + region + c2s + s2c + connect)
    put("memif_session", "handshake_then_disconnect",
        init + region + c2s + s2c + connect + memif_msg(8, struct.pack("<I", 0) + name_field("bye", 96)))
    put("memif_session", "wrong_id", memif_msg(3, struct.pack("<HIB", 0x200, 8, 0) + b"\0" * 24))
    put("memif_session", "region_without_fd", init + region[:127] + b"\x01")
    put("memif_session", "ring_twice", init + region + c2s + c2s)
    put("memif_session", "ring_fd_swapped", init + region + c2s[:127] + b"\x02")
    put("memif_session", "connect_early", init + connect)


seeds_pcap()
seeds_devargs()
seeds_config()
seeds_fwd_edit()
seeds_telemetry()
seeds_memif_msg()
seeds_control()
seeds_memif_session()
