"""The differential corpus: named edge cases plus a seeded random mix.

Frames are built with scapy; the capture files are written here (classic
pcap with micro- or nanosecond stamps, pcapng) so that records can be
snaplen-truncated (caplen < original length) as a real capture's are.

Between every two corpus frames stands a *marker*: an ARP request whose
sender and target IP carry the frame's index. Every mode forwards it (and
icmpecho answers it) in both programs, so the frame a program sent between
markers k and k+1 is its output for corpus frame k: outputs are aligned
without guessing.
"""

import random
import struct

from scapy.all import (ARP, GRE, ICMP, IP, TCP, UDP, VXLAN, Dot1AD, Dot1Q,
                       Ether, ICMPv6EchoRequest, ICMPv6ND_NS, IPOption_NOP,
                       IPOption_RR, IPv6, IPv6ExtHdrDestOpt,
                       IPv6ExtHdrFragment, IPv6ExtHdrHopByHop,
                       IPv6ExtHdrRouting, Raw, fragment, raw)

MARK_MAC = "02:4d:4b:00:00:01"
MARK_MAC_B = bytes.fromhex(MARK_MAC.replace(":", ""))
A = "02:aa:00:00:00:01"
B = "02:bb:00:00:00:02"
V4A, V4B = "10.0.0.1", "10.0.0.2"
V6A, V6B = "2001:db8::1", "2001:db8::2"


def marker(k):
    ip = "10.254.%d.%d" % (k >> 8, k & 0xFF)
    return raw(Ether(src=MARK_MAC, dst="ff:ff:ff:ff:ff:ff") /
               ARP(op=1, hwsrc=MARK_MAC, psrc=ip, hwdst="00:00:00:00:00:00", pdst=ip))


def marker_index(f):
    """The index a marker (forwarded or answered) carries, else None."""
    if len(f) < 42 or f[12:14] != b"\x08\x06" or f[14:20] != b"\x00\x01\x08\x00\x06\x04":
        return None
    sha, spa, tha, tpa = f[22:28], f[28:32], f[32:38], f[38:42]
    if MARK_MAC_B not in (sha, tha) or spa != tpa or spa[:2] != b"\x0a\xfe":
        return None
    return (spa[2] << 8) | spa[3]


def eth(tags=(), src=A, dst=B):
    """Ethernet with VLAN tags: a list of TPIDs (0x8100 / 0x88a8)."""
    p = Ether(src=src, dst=dst)
    for i, t in enumerate(tags):
        p = p / (Dot1AD(vlan=100 + i) if t == 0x88A8 else Dot1Q(vlan=100 + i))
    return p


def ping4(tags=(), src=V4A, dst=V4B, esrc=A, edst=B, data=b"ping payload 0123456789", ttl=64, **icmp):
    return raw(eth(tags, esrc, edst) / IP(src=src, dst=dst, ttl=ttl) /
               ICMP(type=8, id=icmp.get("id", 0x1234), seq=icmp.get("seq", 7),
                    code=icmp.get("code", 0)) / Raw(data))


def ping6(src=V6A, dst=V6B, tags=(), data=b"ping6 payload"):
    return raw(eth(tags) / IPv6(src=src, dst=dst) / ICMPv6EchoRequest(id=0x4321, seq=9, data=data))


def udp4(tags=(), data=b"udp over ipv4 payload", **kw):
    return raw(eth(tags) / IP(src=V4A, dst=V4B, **kw) / UDP(sport=1111, dport=2222) / Raw(data))


def put(b, at, v):
    b = bytearray(b)
    b[at:at + len(v)] = v
    return bytes(b)


def ip_fix(b, l3=14):
    """Recompute the IPv4 header checksum of b (after edits)."""
    b = bytearray(b)
    hl = (b[l3] & 15) * 4
    b[l3 + 10:l3 + 12] = b"\0\0"
    h = bytes(b[l3:l3 + hl])
    h += b"\0" * (len(h) % 2)
    s = sum(struct.unpack("!%dH" % (len(h) // 2), h))
    while s > 0xFFFF:
        s = (s & 0xFFFF) + (s >> 16)
    b[l3 + 10:l3 + 12] = struct.pack("!H", ~s & 0xFFFF)
    return bytes(b)


def cases():
    """(name, frame bytes, caplen or None): every edge case we can think of."""
    c = []

    def add(name, f, caplen=None):
        c.append((name, f, caplen))

    # Ethernet / VLAN / QinQ, L4 over both IP versions.
    for tags, tn in [((), ""), ((0x8100,), "_vlan"), ((0x88A8, 0x8100), "_qinq"),
                     ((0x8100, 0x8100), "_dbl8100"), ((0x88A8, 0x88A8, 0x8100), "_3tags")]:
        add("udp4" + tn, udp4(tags))
        add("tcp4" + tn, raw(eth(tags) / IP(src=V4A, dst=V4B) / TCP(sport=3333, dport=80) / Raw(b"tcp")))
        add("udp6" + tn, raw(eth(tags) / IPv6(src=V6A, dst=V6B) / UDP(sport=5555, dport=53) / Raw(b"u6")))
        add("tcp6" + tn, raw(eth(tags) / IPv6(src=V6A, dst=V6B) / TCP(sport=4444, dport=443)))
        add("ping4" + tn, ping4(tags))
        add("ping6" + tn, ping6(tags=tags))
        add("arp_req" + tn, raw(eth(tags, A, "ff:ff:ff:ff:ff:ff") /
                                ARP(op=1, hwsrc=A, psrc=V4A, pdst=V4B)))
    add("sctp4", raw(eth() / IP(src=V4A, dst=V4B, proto=132) / Raw(b"\x00" * 16)))
    add("lldp", raw(Ether(src=A, dst="01:80:c2:00:00:0e", type=0x88CC) / Raw(b"\x02\x07\x04" + b"\x11" * 30)))
    add("ipx_8137", raw(Ether(src=A, dst=B, type=0x8137) / Raw(b"\xff" * 40)))
    add("udp4_padded", udp4(data=b"") + b"\xee" * 20)
    add("udp4_badcsum", put(udp4(), 40, b"\xde\xad"))
    # IPv4 options.
    add("udp4_opt_rr", raw(eth() / IP(src=V4A, dst=V4B, options=[IPOption_RR(routers=["1.2.3.4"])]) / UDP(sport=7, dport=8)))
    add("udp4_opt_nop", raw(eth() / IP(src=V4A, dst=V4B, options=[IPOption_NOP()] * 4) / UDP(sport=7, dport=8)))
    add("ping4_opt_rr", raw(eth() / IP(src=V4A, dst=V4B, options=[IPOption_RR(routers=["1.2.3.4"])]) / ICMP(type=8) / Raw(b"o")))
    add("ping4_opt_nop", raw(eth() / IP(src=V4A, dst=V4B, options=[IPOption_NOP()] * 4) / ICMP(type=8) / Raw(b"o")))
    # Broken IPv4 headers.
    add("ip4_ihl4", ip_fix(put(udp4(), 14, b"\x44")))
    add("ip4_ihl0", put(udp4(), 14, b"\x40"))
    add("ip4_ihl15_short", ip_fix(put(udp4(), 14, b"\x4f")))
    add("ip4_ver6_in_0800", put(udp4(), 14, b"\x65"))
    add("ip4_total_short", ip_fix(put(udp4(), 16, b"\x00\x16")))
    add("ip4_total_long", ip_fix(put(udp4(), 16, b"\x05\xdc")))
    add("ping4_ver5", put(ping4(), 14, b"\x55"))
    add("ping4_ihl4", ip_fix(put(ping4(), 14, b"\x44")))
    add("ping4_total_short", ip_fix(put(ping4(), 16, b"\x00\x1a")))
    add("ping4_total_long", ip_fix(put(ping4(), 16, b"\x01\x00")))
    # IPv6 extension headers.
    add("udp6_hbh", raw(eth() / IPv6(src=V6A, dst=V6B) / IPv6ExtHdrHopByHop() / UDP(sport=1, dport=2)))
    add("tcp6_dstopt", raw(eth() / IPv6(src=V6A, dst=V6B) / IPv6ExtHdrDestOpt() / TCP(sport=1, dport=2)))
    add("udp6_routing", raw(eth() / IPv6(src=V6A, dst=V6B) / IPv6ExtHdrRouting(addresses=["2001:db8::9"]) / UDP(sport=1, dport=2)))
    add("udp6_frag", raw(eth() / IPv6(src=V6A, dst=V6B) / IPv6ExtHdrFragment(m=1) / UDP(sport=1, dport=2) / Raw(b"f" * 16)))
    add("ping6_hbh", raw(eth() / IPv6(src=V6A, dst=V6B) / IPv6ExtHdrHopByHop() / ICMPv6EchoRequest()))
    add("ip6_ver4_in_86dd", put(raw(eth() / IPv6(src=V6A, dst=V6B) / UDP(sport=1, dport=2)), 14, b"\x45"))
    # IPv4 fragments.
    big_udp = eth() / IP(src=V4A, dst=V4B, id=77) / UDP(sport=9, dport=10) / Raw(bytes(range(256)) * 4)
    for i, fr in enumerate(fragment(big_udp[IP], fragsize=400)):
        add("udp4_frag%d" % i, raw(eth() / fr))
    big_ping = IP(src=V4A, dst=V4B, id=78) / ICMP(type=8, id=1, seq=1) / Raw(bytes(range(256)) * 4)
    for i, fr in enumerate(fragment(big_ping, fragsize=400)):
        add("ping4_frag%d" % i, raw(eth() / fr))
    add("ping4_df", raw(eth() / IP(src=V4A, dst=V4B, flags="DF") / ICMP(type=8) / Raw(b"df")))
    # Tunnels.
    add("gre_ip", raw(eth() / IP(src=V4A, dst=V4B) / GRE() / IP(src="192.168.0.1", dst="192.168.0.2") / UDP(sport=1, dport=2)))
    add("ipip", raw(eth() / IP(src=V4A, dst=V4B, proto=4) / IP(src="192.168.0.1", dst="192.168.0.2") / ICMP(type=8)))
    add("vxlan", raw(eth() / IP(src=V4A, dst=V4B) / UDP(sport=4000, dport=4789) / VXLAN(vni=5) / Ether(src=A, dst=B) / IP() / UDP()))
    add("ip6in4", raw(eth() / IP(src=V4A, dst=V4B, proto=41) / IPv6(src=V6A, dst=V6B) / UDP(sport=1, dport=2)))
    # ARP.
    add("arp_reply", raw(eth() / ARP(op=2, hwsrc=A, psrc=V4A, hwdst=B, pdst=V4B)))
    add("arp_req_sha_differs", raw(eth(src="02:cc:00:00:00:03", dst="ff:ff:ff:ff:ff:ff") / ARP(op=1, hwsrc=A, psrc=V4A, pdst=V4B)))
    add("arp_req_group_sha", raw(eth(dst="ff:ff:ff:ff:ff:ff") / ARP(op=1, hwsrc="03:00:00:00:00:01", psrc=V4A, pdst=V4B)))
    add("arp_probe", raw(eth(dst="ff:ff:ff:ff:ff:ff") / ARP(op=1, hwsrc=A, psrc="0.0.0.0", pdst=V4B)))
    add("arp_gratuitous", raw(eth(dst="ff:ff:ff:ff:ff:ff") / ARP(op=1, hwsrc=A, psrc=V4A, pdst=V4A)))
    add("arp_rarp_op3", raw(eth() / ARP(op=3, hwsrc=A, psrc=V4A, pdst=V4B)))
    add("arp_hw6", raw(eth() / ARP(hwtype=6, op=1, hwsrc=A, psrc=V4A, pdst=V4B)))
    add("arp_short", raw(eth() / ARP(op=1, hwsrc=A, psrc=V4A, pdst=V4B))[:14 + 20])
    # ICMP echo: what must and must not be answered.
    add("ping4_ttl1", ping4(ttl=1))
    add("ping4_to_224", ping4(dst="224.0.0.1"))
    add("ping4_to_239", ping4(dst="239.1.2.3"))
    add("ping4_to_bcast", ping4(dst="255.255.255.255", edst="ff:ff:ff:ff:ff:ff"))
    add("ping4_to_240", ping4(dst="240.0.0.1"))
    add("ping4_from_224", ping4(src="224.0.0.5"))
    add("ping4_from_0", ping4(src="0.0.0.0"))
    add("ping4_from_group_mac", ping4(esrc="01:00:5e:00:00:01"))
    add("ping4_to_bcast_mac", ping4(edst="ff:ff:ff:ff:ff:ff"))
    add("ping4_bad_ipcsum", put(ping4(), 24, b"\x12\x34"))
    add("ping4_bad_icmpcsum", put(ping4(), 36, b"\x12\x34"))
    add("ping4_code1", ping4(code=1))
    add("ping4_zero_msg", ping4(data=b"", id=0, seq=0))
    add("ping4_zero_payload", ping4(data=b"\0" * 32, id=0, seq=0))
    add("ping4_odd_len", ping4(data=b"odd"))
    add("icmp4_reply", raw(eth() / IP(src=V4A, dst=V4B) / ICMP(type=0) / Raw(b"r")))
    add("icmp4_unreach", raw(eth() / IP(src=V4A, dst=V4B) / ICMP(type=3, code=1) / Raw(b"\0" * 28)))
    add("ping6_to_ff02", ping6(dst="ff02::1"))
    add("ping6_from_ff02", ping6(src="ff02::1"))
    add("ping6_from_unspec", ping6(src="::"))
    add("ping6_bad_csum", put(ping6(), 14 + 42, b"\x12\x34"))
    add("icmp6_ns", raw(eth() / IPv6(src=V6A, dst="ff02::1:ff00:2") / ICMPv6ND_NS(tgt=V6B)))
    # Runts and the bare header.
    for n in (1, 6, 11, 12, 13, 14, 15, 17):
        add("runt%d" % n, udp4()[:n])
    add("vlan_cut", raw(eth((0x8100,)) / IP())[:16])
    add("qinq_cut", raw(eth((0x88A8, 0x8100)) / IP())[:20])
    # Jumbo (multi-segment in both programs).
    for n in (2100, 4000, 9000):
        add("udp4_jumbo%d" % n, udp4(data=bytes(i * 7 & 0xFF for i in range(n))))
        add("ping4_jumbo%d" % n, ping4(data=bytes(i * 11 & 0xFF for i in range(n))))
    add("ping4_jumbo_vlan", ping4((0x8100,), data=b"\x5a" * 5000))
    add("ping6_jumbo", ping6(data=b"\xa5" * 6000))
    add("tcp6_jumbo_qinq", raw(eth((0x88A8, 0x8100)) / IPv6(src=V6A, dst=V6B) / TCP(sport=1, dport=2) / Raw(b"j" * 8000)))
    # Snaplen-truncated records (caplen < original length).
    for n in (20, 30, 34, 38, 42, 60):
        f = ping4(data=b"x" * 100)
        add("ping4_snap%d" % n, f, n)
        f = udp4(data=b"y" * 100)
        add("udp4_snap%d" % n, f, n)
    add("ping6_snap70", ping6(data=b"z" * 100), 70)
    add("jumbo_snap96", udp4(data=b"q" * 5000), 96)
    return c


def random_mix(seed, n):
    """n random frames (name, bytes, caplen) from a seeded generator."""
    r = random.Random(seed)
    out = []

    def mac():
        b = [r.randrange(256) for _ in range(6)]
        if r.random() < 0.9:
            b[0] &= 0xFE
        return ":".join("%02x" % x for x in b)

    def ip4():
        if r.random() < 0.05:
            return r.choice(["224.0.0.1", "255.255.255.255", "0.0.0.0", "239.9.9.9"])
        return "10.%d.%d.%d" % (r.randrange(256), r.randrange(256), r.randrange(1, 255))

    def ip6():
        if r.random() < 0.05:
            return "ff02::%x" % r.randrange(1, 0xFFFF)
        return "2001:db8::%x:%x" % (r.randrange(0xFFFF), r.randrange(1, 0xFFFF))

    for i in range(n):
        size = r.choice([0, 0, 0, 0, 0, 0, 10, 40, 100, 400, 1000, 1400]) + r.randrange(64)
        if r.random() < 0.02:
            size = r.randrange(2000, 9100)
        data = bytes(r.randrange(256) for _ in range(min(size, 64))) * (size // 64 + 1)
        data = data[:size]
        tags = r.choice([(), (), (), (), (0x8100,), (0x88A8, 0x8100), (0x8100, 0x8100)])
        e = eth(tags, mac(), mac())
        k = r.random()
        if k < 0.3:
            p = e / IP(src=ip4(), dst=ip4(), ttl=r.randrange(1, 256), id=i & 0xFFFF) / UDP(sport=r.randrange(65536), dport=r.randrange(65536)) / Raw(data)
        elif k < 0.45:
            p = e / IP(src=ip4(), dst=ip4(), id=i & 0xFFFF) / TCP(sport=r.randrange(65536), dport=r.randrange(65536)) / Raw(data)
        elif k < 0.65:
            p = e / IP(src=ip4(), dst=ip4(), ttl=r.randrange(1, 256), id=i & 0xFFFF) / ICMP(type=8, id=r.randrange(65536), seq=i & 0xFFFF) / Raw(data)
        elif k < 0.75:
            p = e / IPv6(src=ip6(), dst=ip6()) / ICMPv6EchoRequest(id=r.randrange(65536), seq=i & 0xFFFF, data=data)
        elif k < 0.85:
            p = e / IPv6(src=ip6(), dst=ip6()) / r.choice([UDP, TCP])(sport=r.randrange(65536), dport=r.randrange(65536)) / Raw(data)
        elif k < 0.92:
            p = e / ARP(op=r.choice([1, 1, 2]), hwsrc=mac(), psrc=ip4(), pdst=ip4())
        else:
            p = e / Raw(struct.pack("!H", r.randrange(0x600, 0x10000)) + data)
        f = bytearray(raw(p))
        caplen = None
        m = r.random()
        if m < 0.06:
            # Corrupt a header byte.
            at = r.randrange(12, min(len(f), 70))
            f[at] = r.randrange(256)
        elif m < 0.10:
            caplen = r.randrange(1, len(f) + 1)
        name = "rand%d" % i
        f = bytes(f)
        if marker_index(f) is not None:
            continue
        out.append((name, f, caplen))
    return out


def corpus(seed, n_random):
    return cases() + random_mix(seed, n_random)


def records(frames):
    """Interleave markers: [(bytes, caplen, orig_len)] for the writers."""
    recs = []
    for k, (_, f, caplen) in enumerate(frames):
        m = marker(k)
        recs.append((m, len(m), len(m)))
        cl = len(f) if caplen is None else min(caplen, len(f))
        recs.append((f[:cl], cl, len(f)))
    return recs


def write_pcap(path, recs, nanos=False):
    with open(path, "wb") as o:
        magic = 0xA1B23C4D if nanos else 0xA1B2C3D4
        o.write(struct.pack("<IHHiIII", magic, 2, 4, 0, 0, 65535, 1))
        for i, (b, cl, ol) in enumerate(recs):
            sec, frac = 1700000000 + i // 1000, (i % 1000) * (1000 if not nanos else 1000000) + (7 if nanos else 0)
            o.write(struct.pack("<IIII", sec, frac, cl, ol))
            o.write(b)


def write_pcapng(path, recs):
    def block(t, body):
        body += b"\0" * (-len(body) % 4)
        n = 12 + len(body)
        return struct.pack("<II", t, n) + body + struct.pack("<I", n)

    with open(path, "wb") as o:
        o.write(block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1)))
        o.write(block(1, struct.pack("<HHI", 1, 0, 65535)))
        for i, (b, cl, ol) in enumerate(recs):
            ts = (1700000000 + i) * 1000000
            o.write(block(6, struct.pack("<IIIII", 0, ts >> 32, ts & 0xFFFFFFFF, cl, ol) + b))


def read_pcap(path):
    """Frames of a classic pcap (either stamp precision) or pcapng."""
    d = open(path, "rb").read()
    out = []
    if d[:4] == b"\x0a\x0d\x0d\x0a":
        i = 0
        while i + 12 <= len(d):
            t, n = struct.unpack_from("<II", d, i)
            if t == 6:
                cl = struct.unpack_from("<I", d, i + 20)[0]
                out.append(d[i + 28:i + 28 + cl])
            i += n
        return out
    magic = struct.unpack_from("<I", d, 0)[0]
    e = "<" if magic in (0xA1B2C3D4, 0xA1B23C4D) else ">"
    i = 24
    while i + 16 <= len(d):
        cl = struct.unpack_from(e + "I", d, i + 8)[0]
        out.append(d[i + 16:i + 16 + cl])
        i += 16 + cl
    return out
