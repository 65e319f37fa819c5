"""What each program does to one frame, per mode, written from their
sources' and docs' rules (not from xfwd's code).

`testpmd(mode, f, port_mac, peer)` models DPDK 22.11's engines, including
their reads past the end of short frames: it returns (out, undefined,
presence_undefined) where `out` is the frame it sends (None: dropped),
`undefined` the output positions whose bytes come from stale mbuf memory,
and `presence_undefined` True when whether it sends at all depends on
stale bytes.

`xfwd(mode, f, port_mac, peer)` models docs/forwarding.md: it returns (out,
rules, reason): the frame xfwd sends (None: dropped), the names of the
`rule:` entries of docs/forwarding.md under which it departs from testpmd
for this frame, and the drop counter it is counted under.
"""

import struct

STALE = None


class Buf:
    """A frame as testpmd sees it: bytes past its end are stale."""

    def __init__(self, f):
        self.b = list(f)
        self.n = len(f)
        self.undef = set()

    def rd(self, at, k=1):
        if at < 0 or at + k > self.n:
            return STALE
        if any(p in self.undef for p in range(at, at + k)):
            return STALE
        v = 0
        for p in range(at, at + k):
            v = (v << 8) | self.b[p]
        return v

    def wr(self, at, val, k):
        """Write a k-byte big-endian value (STALE marks the bytes)."""
        for j in range(k):
            p = at + j
            if p >= self.n:
                continue
            if val is STALE:
                self.undef.add(p)
            else:
                self.b[p] = (val >> (8 * (k - 1 - j))) & 0xFF
                self.undef.discard(p)

    def cp(self, dst, src, k):
        """memcpy within the mbuf (stale sources make stale bytes)."""
        vals = [self.rd(src + j) for j in range(k)]
        for j, v in enumerate(vals):
            self.wr(dst + j, v, 1)

    def swap(self, a, c, k):
        va = [self.rd(a + j) for j in range(k)]
        vc = [self.rd(c + j) for j in range(k)]
        for j in range(k):
            self.wr(a + j, vc[j], 1)
            self.wr(c + j, va[j], 1)

    def setmac(self, at, mac):
        for j in range(6):
            self.wr(at + j, mac[j], 1)

    def out(self):
        return bytes(x if i not in self.undef else 0 for i, x in enumerate(self.b)), set(self.undef)


class Undefined(Exception):
    """testpmd's decision depends on stale bytes."""


def need(v):
    if v is STALE:
        raise Undefined()
    return v


def csum16(data):
    if len(data) % 2:
        data = data + b"\0"
    s = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while s > 0xFFFF:
        s = (s & 0xFFFF) + (s >> 16)
    return s


# ---------------------------------------------------------------- testpmd


def testpmd(mode, f, port_mac, peer):
    b = Buf(f)
    try:
        if mode == "io":
            pass
        elif mode == "mac":
            b.setmac(0, peer)
            b.setmac(6, port_mac)
        elif mode == "macswap":
            b.swap(0, 6, 6)
        elif mode == "5tswap":
            tp_5tswap(b)
        elif mode == "icmpecho":
            if not tp_icmpecho(b, port_mac):
                return None, set(), False
        else:
            raise ValueError(mode)
    except Undefined:
        o, u = b.out()
        return o, set(range(len(f))), True
    o, u = b.out()
    return o, u, False


def tp_5tswap(b):
    proto = b.rd(12, 2)
    b.swap(0, 6, 6)
    at = 14
    try:
        while need(proto) in (0x8100, 0x88A8):
            proto = b.rd(at + 2, 2)
            at += 4
        if proto == 0x0800:
            b.swap(at + 12, at + 16, 4)
            nxt = need(b.rd(at + 9))
            l4 = at + (need(b.rd(at)) & 0xF) * 4
        elif proto == 0x86DD:
            b.swap(at + 8, at + 24, 16)
            nxt = need(b.rd(at + 6))
            l4 = at + 40
        else:
            return
        if nxt in (6, 17):
            b.swap(l4, l4 + 2, 2)
    except Undefined:
        # What it goes on to write depends on stale bytes: every byte from
        # the first unknown layer on is undefined (it always forwards).
        for p in range(min(at, b.n), b.n):
            b.undef.add(p)


def tp_icmpecho(b, port_mac):
    et = need(b.rd(12, 2))
    l2 = 14
    if et == 0x8100:
        et = need(b.rd(16, 2))
        l2 = 18
    if et == 0x0806:
        a = l2
        if (need(b.rd(a, 2)), need(b.rd(a + 2, 2)), need(b.rd(a + 4)), need(b.rd(a + 5))) != (1, 0x0800, 6, 4):
            return False
        if need(b.rd(a + 6, 2)) != 1:
            return False
        b.cp(0, 6, 6)
        b.setmac(6, port_mac)
        b.wr(a + 6, 2, 2)
        b.cp(a + 18, a + 8, 6)
        b.cp(a + 8, 6, 6)
        b.swap(a + 14, a + 24, 4)
        return True
    if et != 0x0800:
        return False
    ip = l2
    icmp = ip + 20
    if need(b.rd(ip + 9)) != 1 or need(b.rd(icmp)) != 8 or need(b.rd(icmp + 1)) != 0:
        return False
    b.swap(0, 6, 6)
    dst_top = need(b.rd(ip + 16))
    if dst_top == 0xE0:
        src = b.rd(ip + 12, 4)
        if src is STALE:
            b.wr(ip + 12, STALE, 4)
            b.wr(ip + 16, STALE, 4)
            b.wr(ip + 10, STALE, 2)
        else:
            ns = (src & 0xFFFFFFFC) | (2 if (src & 3) == 1 else 1)
            b.wr(ip + 12, ns, 4)
            b.wr(ip + 16, src, 4)
            words = [b.rd(ip + 2 * j, 2) for j in range(10) if j != 5]
            if any(w is STALE for w in words):
                b.wr(ip + 10, STALE, 2)
            else:
                s = sum(words)
                s = (s & 0xFFFF) + (s >> 16)
                s = (s & 0xFFFF) + (s >> 16)
                c = ~s & 0xFFFF
                b.wr(ip + 10, 0xFFFF if c == 0 else c, 2)
    else:
        b.swap(ip + 12, ip + 16, 4)
    b.wr(icmp, 0, 1)
    hc = b.rd(icmp + 2, 2)
    if hc is STALE:
        b.wr(icmp + 2, STALE, 2)
    else:
        c = (~hc & 0xFFFF) + (~0x0800 & 0xFFFF) + 0x0000
        c = (c & 0xFFFF) + (c >> 16)
        c = (c & 0xFFFF) + (c >> 16)
        b.wr(icmp + 2, ~c & 0xFFFF, 2)
    return True


# ------------------------------------------------------------------ xfwd


def walk_l2(f):
    at = 12
    et = struct.unpack_from("!H", f, at)[0]
    tags = []
    while et in (0x8100, 0x88A8) and at + 6 <= len(f):
        tags.append(et)
        at += 4
        et = struct.unpack_from("!H", f, at)[0]
    return at + 2, et, tags


def xfwd(mode, f, port_mac, peer):
    n = len(f)
    if mode == "io":
        return f, [], None
    if n < 14:
        return None, ["runt"], "runt"
    b = bytearray(f)
    if mode == "mac":
        b[0:6], b[6:12] = peer, port_mac
        return bytes(b), ["port-mac"], None
    b[0:6], b[6:12] = f[6:12], f[0:6]
    if mode == "macswap":
        return bytes(b), [], None
    if mode == "5tswap":
        return x_5tswap(b)
    if mode == "icmpecho":
        return x_icmpecho(f, port_mac)
    raise ValueError(mode)


def x_5tswap(b):
    n = len(b)
    l3, et, _ = walk_l2(b)
    if et == 0x0800:
        if n < l3 + 20 or b[l3] >> 4 != 4 or b[l3] & 15 < 5 or n < l3 + (b[l3] & 15) * 4:
            return bytes(b), ["l3-unparsed"], "partial"
        hl = (b[l3] & 15) * 4
        b[l3 + 12:l3 + 16], b[l3 + 16:l3 + 20] = b[l3 + 16:l3 + 20], b[l3 + 12:l3 + 16]
        proto = b[l3 + 9]
        if struct.unpack_from("!H", b, l3 + 6)[0] & 0x1FFF:
            return bytes(b), (["fragment-l4"] if proto in (6, 17) else []), None
        end = l3 + struct.unpack_from("!H", b, l3 + 2)[0]
        l4 = l3 + hl
    elif et == 0x86DD:
        if n < l3 + 40 or b[l3] >> 4 != 6:
            return bytes(b), ["l3-unparsed"], "partial"
        b[l3 + 8:l3 + 24], b[l3 + 24:l3 + 40] = b[l3 + 24:l3 + 40], b[l3 + 8:l3 + 24]
        proto = b[l3 + 6]
        end = l3 + 40 + struct.unpack_from("!H", b, l3 + 4)[0]
        l4 = l3 + 40
    elif et in (0x8100, 0x88A8):
        return bytes(b), [], "partial"
    else:
        return bytes(b), [], None
    if proto not in (6, 17):
        return bytes(b), [], None
    if l4 + 4 > min(end, n):
        return bytes(b), ["l4-outside"], "partial"
    b[l4:l4 + 2], b[l4 + 2:l4 + 4] = b[l4 + 2:l4 + 4], b[l4:l4 + 2]
    return bytes(b), [], None


DROP_RULE = {
    "truncated": "ip-header",
    "bad_ip_header": "ip-header",
    "ip_options": "ip-header",
    "bad_ip_checksum": "bad-checksum",
    "bad_icmp_checksum": "bad-checksum",
    "fragment": "fragment",
    "src_not_unicast": "not-unicast",
    "dst_not_unicast": "not-unicast",
}


def v4_not_unicast(a):
    return a == b"\0\0\0\0" or a[0] >= 224


def x_icmpecho(f, port_mac):
    n = len(f)
    l3, et, tags = walk_l2(f)
    vlan = [] if tags in ([], [0x8100]) else ["vlan-walk"]

    def drop(reason, extra=()):
        return None, [DROP_RULE.get(reason, reason)] + list(extra) + vlan, reason

    if et in (0x8100, 0x88A8):
        return None, [], "truncated"
    if et == 0x0806:
        if n < l3 + 28:
            return None, ["arp-short"], "truncated"
        a = f[l3:l3 + 28]
        if a[0:6] != b"\x00\x01\x08\x00\x06\x04" or a[6:8] != b"\x00\x01":
            return None, vlan, "consumed"
        sha = a[8:14]
        if sha[0] & 1:
            return None, ["not-unicast"] + vlan, "src_not_unicast"
        r = bytearray(f)
        r[0:6], r[6:12] = sha, port_mac
        r[l3 + 6:l3 + 8] = b"\x00\x02"
        r[l3 + 8:l3 + 14], r[l3 + 14:l3 + 18] = port_mac, a[24:28]
        r[l3 + 18:l3 + 24], r[l3 + 24:l3 + 28] = sha, a[14:18]
        rules = ["port-mac"] + (["arp-reply-dst"] if f[6:12] != sha else []) + vlan
        return bytes(r), rules, None
    if et == 0x0800:
        if n < l3 + 20:
            return drop("truncated")
        v, hl = f[l3] >> 4, (f[l3] & 15) * 4
        if v != 4 or hl < 20:
            return drop("bad_ip_header")
        if n < l3 + hl:
            return drop("truncated")
        if f[l3 + 9] != 1:
            return None, vlan, "consumed"
        if struct.unpack_from("!H", f, l3 + 6)[0] & 0x3FFF:
            return drop("fragment")
        total = struct.unpack_from("!H", f, l3 + 2)[0]
        if total < hl + 8:
            return drop("bad_ip_header")
        l4 = l3 + hl
        if n < l4 + 8:
            return drop("truncated")
        if f[l4] != 8 or f[l4 + 1] != 0:
            return None, vlan, "consumed"
        if l3 + total > n:
            return drop("truncated")
        if csum16(f[l3:l3 + hl]) != 0xFFFF:
            return drop("bad_ip_checksum")
        if hl != 20:
            return drop("ip_options")
        src, dst = f[l3 + 12:l3 + 16], f[l3 + 16:l3 + 20]
        if v4_not_unicast(src) or f[6] & 1:
            return drop("src_not_unicast")
        if v4_not_unicast(dst):
            return drop("dst_not_unicast")
        msg = f[l4:l3 + total]
        if csum16(msg) != 0xFFFF:
            return drop("bad_icmp_checksum")
        r = bytearray(f)
        r[l4] = 0
        r[l4 + 2:l4 + 4] = b"\0\0"
        c = ~csum16(bytes(r[l4:l3 + total])) & 0xFFFF
        r[l4 + 2:l4 + 4] = struct.pack("!H", c)
        r[l3 + 12:l3 + 16], r[l3 + 16:l3 + 20] = dst, src
        r[l3 + 8] = 64
        r[l3 + 10:l3 + 12] = b"\0\0"
        r[l3 + 10:l3 + 12] = struct.pack("!H", ~csum16(bytes(r[l3:l3 + 20])) & 0xFFFF)
        r[0:6], r[6:12] = f[6:12], port_mac
        rules = ["port-mac", "reply-eth-src"] + (["reply-ttl"] if f[l3 + 8] != 64 else [])
        if c == 0xFFFF:
            rules.append("zero-checksum")
        return bytes(r), rules + vlan, None
    if et == 0x86DD:
        six = ["icmpv6"]
        if n < l3 + 40:
            return drop("truncated", six)
        if f[l3] >> 4 != 6:
            return drop("bad_ip_header", six)
        if f[l3 + 6] != 58:
            return None, [], "consumed"
        plen = struct.unpack_from("!H", f, l3 + 4)[0]
        l4 = l3 + 40
        if plen < 8:
            return drop("bad_ip_header", six)
        if n < l4 + 8:
            return drop("truncated", six)
        if f[l4] != 128 or f[l4 + 1] != 0:
            return None, [], "consumed"
        if l4 + plen > n:
            return drop("truncated", six)
        src, dst = f[l3 + 8:l3 + 24], f[l3 + 24:l3 + 40]
        if src[0] == 0xFF or src == bytes(16) or f[6] & 1:
            return drop("src_not_unicast", six)
        if dst[0] == 0xFF:
            return drop("dst_not_unicast", six)
        pseudo = src + dst + struct.pack("!IxxxB", plen, 58)
        if csum16(pseudo + f[l4:l4 + plen]) != 0xFFFF:
            return drop("bad_icmp_checksum", six)
        r = bytearray(f)
        r[l4] = 129
        r[l4 + 2:l4 + 4] = b"\0\0"
        c = ~csum16(pseudo + bytes(r[l4:l4 + plen])) & 0xFFFF
        r[l4 + 2:l4 + 4] = struct.pack("!H", c)
        r[l3 + 8:l3 + 24], r[l3 + 24:l3 + 40] = dst, src
        r[l3 + 7] = 64
        r[0:6], r[6:12] = f[6:12], port_mac
        return bytes(r), ["icmpv6", "port-mac", "reply-eth-src"] + vlan, None
    return None, [], "consumed"
