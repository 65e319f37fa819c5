#!/usr/bin/python3
"""Differential test: xfwd's pcap port against dpdk-testpmd's net_pcap, per
forwarding mode, frame by frame, byte-exact.

    tests/diff/run.py --xfwd PATH [--out DIR] [--seed N] [--random N] [--modes io,mac,...]

For every mode it replays the same corpus (corpus.py) through both programs
and, for every corpus frame:
  1. testpmd's output must be what models.testpmd predicts (bytes that come
     from stale mbuf memory are not compared): this checks our reading of
     testpmd against the real one;
  2. xfwd's output must be exactly what models.xfwd predicts from
     docs/forwarding.md;
  3. where the two outputs differ, the frame must carry at least one rule
     name, and every name must be a `rule:` of docs/forwarding.md.
Then every icmpecho reply xfwd sent is verified by scapy (checksums, source
address, length) and tshark (checksum status). Exit 0 when nothing failed.
"""

import argparse
import collections
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import corpus as C  # noqa: E402
import models as M  # noqa: E402

PEER = bytes.fromhex("020000000099")
PEER_S = "02:00:00:00:00:99"
MODES = ["io", "mac", "macswap", "5tswap", "icmpecho"]


def mac_bytes(s):
    return bytes.fromhex(s.replace(":", ""))


def run_xfwd(xfwd, mode, inp, out):
    t = time.time()
    p = subprocess.run(
        [xfwd, "--port", "pcap:rx=%s,tx=%s" % (inp, out), "--port-topology", "loop",
         "--forward-mode", mode, "--no-huge", "--eth-peer", "0," + PEER_S,
         "--nb-mbufs", "8192", "--json", "--stats-period", "0"],
        capture_output=True, text=True, timeout=120)
    if p.returncode != 0:
        raise SystemExit("xfwd %s failed (%d):\n%s\n%s" % (mode, p.returncode, p.stdout, p.stderr))
    fin = json.loads(p.stdout.strip().splitlines()[-1])
    if fin["leaked_mbufs"] != 0:
        raise SystemExit("xfwd %s leaked mbufs: %s" % (mode, fin))
    return fin, time.time() - t


def run_testpmd(mode, inp, out, expect_rx, tag):
    """testpmd on a net_pcap port, stopped by SIGINT once its periodic stats
    show every frame received and one more second passed (TX settled)."""
    t = time.time()
    cmd = ["dpdk-testpmd", "-l", "0,1", "--no-pci", "--no-huge", "-m", "512",
           "--file-prefix", "xfwd-diff-%d-%s" % (os.getpid(), tag),
           "--vdev", "net_pcap0,rx_pcap=%s,tx_pcap=%s" % (inp, out), "--",
           "--no-flush-rx", "--forward-mode=" + mode, "--eth-peer=0," + PEER_S,
           "--total-num-mbufs=16384", "--stats-period", "1"]
    p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True)
    log = []
    reader = threading.Thread(target=lambda: log.extend(iter(p.stdout.readline, "")), daemon=True)
    reader.start()
    mac, rx, seen, done = None, -1, 0, 0
    deadline = time.time() + 60
    try:
        while time.time() < deadline and p.poll() is None:
            time.sleep(0.2)
            rxs = [int(m.group(1)) for m in re.finditer(r"RX-packets:\s+(\d+)", "".join(log))]
            if rxs and rxs[-1] >= expect_rx:
                done += 1
                # One more stats period after the last frame came in: TX settled.
                if done >= 6:
                    break
        rx = max(rxs) if rxs else -1
        # With --stats-period testpmd does not wait for stdin: SIGINT ends it
        # (it closes the port, which flushes the pcap file).
        p.send_signal(signal.SIGINT)
        p.wait(timeout=30)
        reader.join(timeout=10)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    m = re.search(r"Port 0: ([0-9A-Fa-f:]{17})", "".join(log))
    mac = mac_bytes(m.group(1)) if m else None
    text = "".join(log)
    if rx < expect_rx or mac is None:
        raise SystemExit("testpmd %s: received %d of %d frames (mac %s):\n%s" % (mode, rx, expect_rx, mac, text[-3000:]))
    return mac, time.time() - t


def align(frames, n):
    """Map each corpus index to the frame sent between its marker and the
    next one (None: nothing), checking that every marker came through."""
    out = [None] * n
    seen = set()
    k = None
    for f in frames:
        i = C.marker_index(f)
        if i is not None:
            k = i
            seen.add(i)
            continue
        if k is None or out[k] is not None:
            raise SystemExit("output frame outside the marker frame (after marker %s)" % k)
        out[k] = f
    missing = set(range(n)) - seen
    if missing:
        raise SystemExit("markers missing from the output: %s" % sorted(missing)[:10])
    return out


def masked_eq(a, b, undef):
    if a is None or b is None:
        return a is None and b is None
    if len(a) != len(b):
        return False
    return all(x == y or i in undef for i, (x, y) in enumerate(zip(a, b)))


def doc_rules():
    doc = open(os.path.join(HERE, "..", "..", "docs", "forwarding.md")).read()
    return set(re.findall(r"`rule: ([a-z0-9-]+)`", doc))


def verify_replies(frames, replies, out_path, port_mac):
    """Independent checks of every xfwd icmpecho reply: scapy recomputes the
    checksums and we compare; tshark checks the checksum status."""
    from scapy.all import ARP, ICMP, IP, Ether, ICMPv6EchoReply, IPv6, raw
    bad = []
    for k, r in replies:
        req = frames[k][1]
        p = Ether(r)
        if len(r) != len(req):
            bad.append((k, "reply length %d != request %d" % (len(r), len(req))))
        if p.src.lower() != ":".join("%02x" % x for x in port_mac):
            bad.append((k, "reply not from the port MAC"))
        if IP in p and ICMP in p:
            q = Ether(req)
            ip, icmp = p[IP], p[ICMP]
            c1, c2 = ip.chksum, icmp.chksum
            del ip.chksum
            del icmp.chksum
            again = Ether(raw(p))
            if again[IP].chksum != c1 or again[ICMP].chksum != c2:
                bad.append((k, "checksums %04x/%04x, scapy says %04x/%04x" % (c1, c2, again[IP].chksum, again[ICMP].chksum)))
            if ip.src != q[IP].dst or ip.dst != q[IP].src:
                bad.append((k, "addresses not the request's swapped"))
            if ip.src.split(".")[0] in [str(x) for x in range(224, 256)] or ip.src == "0.0.0.0":
                bad.append((k, "reply from a non-unicast source %s" % ip.src))
            if icmp.type != 0:
                bad.append((k, "not an echo reply"))
        elif IPv6 in p and ICMPv6EchoReply in p:
            e = p[ICMPv6EchoReply]
            c = e.cksum
            del e.cksum
            again = Ether(raw(p))
            if again[ICMPv6EchoReply].cksum != c:
                bad.append((k, "icmpv6 checksum %04x, scapy says %04x" % (c, again[ICMPv6EchoReply].cksum)))
            if p[IPv6].src.lower().startswith("ff"):
                bad.append((k, "icmpv6 reply from multicast"))
        elif ARP in p:
            if p[ARP].op != 2 or p[ARP].hwsrc != p.src:
                bad.append((k, "arp reply fields"))
        else:
            bad.append((k, "reply scapy does not recognise: %s" % p.summary()))
    t = subprocess.run(["tshark", "-r", out_path, "-o", "ip.check_checksum:TRUE", "-T", "fields",
                        "-E", "separator=,", "-e", "frame.number", "-e", "ip.checksum.status",
                        "-e", "icmp.checksum.status", "-e", "icmpv6.checksum.status"],
                       capture_output=True, text=True, timeout=120)
    checked = 0
    for line in t.stdout.splitlines():
        f = line.split(",")
        # Nested headers (IP in ICMP errors) give several values: all must be good.
        for v in ",".join(f[1:]).replace(",", " ").split():
            checked += 1
            if v != "1":
                bad.append((f[0], "tshark: checksum status %s in frame %s" % (v, line)))
    return bad, checked


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--xfwd", required=True)
    ap.add_argument("--out")
    ap.add_argument("--seed", type=int, default=21)
    ap.add_argument("--random", type=int, default=3000)
    ap.add_argument("--modes", default=",".join(MODES))
    a = ap.parse_args()
    out = a.out or tempfile.mkdtemp(prefix="xfwd-diff-")
    os.makedirs(out, exist_ok=True)
    t0 = time.time()
    frames = C.corpus(a.seed, a.random)
    recs = C.records(frames)
    n = len(frames)
    inputs = {"pcap": os.path.join(out, "in.pcap")}
    C.write_pcap(inputs["pcap"], recs)
    C.write_pcapng(os.path.join(out, "in.pcapng"), recs)
    C.write_pcap(os.path.join(out, "in-ns.pcap"), recs, nanos=True)
    rules_doc = doc_rules()
    print("corpus: %d frames (%d named cases, %d random, seed %d) + %d markers, written in %.1f s to %s"
          % (n, len(C.cases()), n - len(C.cases()), a.seed, n, time.time() - t0, out))
    failures = []
    runs = [(m, "pcap") for m in a.modes.split(",")] + [("5tswap", "pcapng"), ("io", "ns")]
    for mode, fmt in runs:
        inp = {"pcap": inputs["pcap"], "pcapng": os.path.join(out, "in.pcapng"),
               "ns": os.path.join(out, "in-ns.pcap")}[fmt]
        xo = os.path.join(out, "xfwd-%s-%s.pcap" % (mode, fmt))
        to = os.path.join(out, "testpmd-%s-%s.pcap" % (mode, fmt))
        fin, tx = run_xfwd(a.xfwd, mode, inp, xo)
        xmac = mac_bytes(fin["ports"][0]["mac"])
        tmac, tt = run_testpmd(mode, inp, to, len(recs), "%s-%s" % (mode, fmt))
        xs = align(C.read_pcap(xo), n)
        ts = align(C.read_pcap(to), n)
        stats = collections.Counter()
        mode_fail = []
        drops = collections.Counter()
        partial = 0
        replies = []
        for k, (name, f, caplen) in enumerate(frames):
            fr = f if caplen is None else f[:caplen]
            tp_pred, undef, pres_undef = M.testpmd(mode, fr, tmac, PEER)
            x_pred, rules, reason = M.xfwd(mode, fr, xmac, PEER)
            if reason not in (None, "consumed", "partial"):
                drops[reason] += 1
            partial += reason == "partial"
            if not pres_undef and not masked_eq(ts[k], tp_pred, undef):
                mode_fail.append("%s #%d %s: testpmd sent %s, its model predicts %s" % (mode, k, name, h(ts[k]), h(tp_pred)))
            if xs[k] != x_pred:
                mode_fail.append("%s #%d %s: xfwd sent %s, docs/forwarding.md says %s (rules %s)" % (mode, k, name, h(xs[k]), h(x_pred), rules))
            if xs[k] is not None and mode == "icmpecho":
                replies.append((k, xs[k]))
            same = pres_undef is False and masked_eq(xs[k], ts[k], undef)
            if same:
                stats["agree" + (" (stale bytes not compared)" if undef and ts[k] is not None else "")] += 1
                continue
            named = list(rules) if not pres_undef else list(rules) + ["stale"]
            unknown = [r for r in named if r not in rules_doc and r != "stale"]
            if not named or unknown:
                mode_fail.append("%s #%d %s: unexplained difference (rules %s): xfwd %s testpmd %s" % (mode, k, name, named, h(xs[k]), h(ts[k])))
            for r in sorted(set(named)):
                stats["rule " + r] += 1
        # The per-reason drop counters and `partial` agree with the model.
        got = fin["ports"][0]["fwd"].get("drops", {})
        if dict(got) != dict(drops):
            mode_fail.append("%s: drop counters %s, expected %s" % (mode, got, dict(drops)))
        if fin["ports"][0]["fwd"].get("partial", 0) != partial:
            mode_fail.append("%s: partial %s, expected %d" % (mode, fin["ports"][0]["fwd"].get("partial"), partial))
        if partial:
            stats["xfwd forwarded partly swapped (partial)"] = partial
        if mode == "icmpecho":
            bad, checked = verify_replies(frames, replies, xo, xmac)
            mode_fail += ["icmpecho reply #%s: %s" % b for b in bad]
            stats["replies verified by scapy"] = len(replies)
            stats["checksums tshark found good"] = checked - len(bad)
        print("%-9s %-6s xfwd %.1f s, testpmd %.1f s: %s" % (mode, fmt, tx, tt, ", ".join("%s %d" % kv for kv in sorted(stats.items()))))
        if drops:
            print("          xfwd drops: %s" % ", ".join("%s %d" % kv for kv in sorted(drops.items())))
        for m in mode_fail[:20]:
            print("  FAIL " + m)
        if len(mode_fail) > 20:
            print("  ... %d more" % (len(mode_fail) - 20))
        failures += mode_fail
    print("%s: %d failures in %.1f s" % ("FAILED" if failures else "ok", len(failures), time.time() - t0))
    return 1 if failures else 0


def h(b):
    if b is None:
        return "nothing"
    s = b.hex()
    return "%d B %s%s" % (len(b), s[:120], "..." if len(s) > 120 else "")


if __name__ == "__main__":
    sys.exit(main())
