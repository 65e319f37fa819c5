#!/usr/bin/env bash
# xfwd's l3fwd mode vs DPDK 22.11's own l3fwd example, CPU-bound: one port
# replays a trace from memory in a loop (xfwd `pcap:rx=..,loop=infinite`,
# DPDK `net_pcap rx_pcap=..,infinite_rx=1`), every frame is routed (LPM or
# EM, TTL decremented, checksum updated, MACs rewritten) back out of that
# port, whose TX discards. One forwarding lcore each on CPU 1 (DPDK's main
# lcore forwards, as l3fwd wants a TX queue per lcore and net_pcap has one;
# xfwd's main thread is not pinned); runs alternate xfwd / DPDK; medians
# and ratios. Each run is measured over one window of --secs after a
# warm-up: packets sent, from the tool's own telemetry before and after,
# and over the same window the CPU time of the process (`perf stat -p`,
# task-clock): cycles/pkt = CPU ns/pkt × MHz holds on a loaded machine
# where Mpps does not (the forwarder busy-polls whenever it runs). XFWD=binary runs that xfwd (an A/B
# of two builds: XFWD_B=other-binary adds its runs to the rotation and
# prints its medians on stderr; NO_DPDK=1 skips DPDK).
#
# Tables: 16 (l3fwd's default 198.18.{0-15}.0/24), 16 k and 1 M prefixes
# (mostly /24s, 1 in 16 longer than /24 so DIR-24-8's second level is
# used), or as many 5-tuple flows for EM; the trace (4096 64-byte UDP
# frames) hits random routes/flows of the table.
#
# DPDK's l3fwd is built here from /usr/share/dpdk/examples (Debian
# dpdk-doc; libdpdk-dev, pkg-config) in a scratch directory, with its LPM
# rule limit (1024) and tbl8 count raised so 1 M routes load, and without
# the RX checksum offload request net_pcap cannot grant; nothing of it is
# kept. Needs root and 2 MiB hugepages (scripts/setup-test-host).
#
#   benches/l3fwd_vs_dpdk.sh [--runs N] [--secs S] [--sizes "16 16384 1048576"] [--lookups "lpm em"]
#                            [--dpdk-wait S]   (how long DPDK may take to load its table, default 120)
set -euo pipefail
runs=3 secs=6 sizes="16 16384 1048576" lookups="lpm em" dpdk_wait=120
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) runs=$2; shift;;
    --secs) secs=$2; shift;;
    --sizes) sizes=$2; shift;;
    --lookups) lookups=$2; shift;;
    --dpdk-wait) dpdk_wait=$2; shift;;
    -h|--help) sed -n '2,25p' "$0"; exit 0;;
    *) echo "unknown argument $1 (see --help)" >&2; exit 2;;
  esac
  shift
done
[ "$(id -u)" = 0 ] || { echo "needs root (DPDK hugepages)" >&2; exit 1; }
here=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d /tmp/xfwd-l3bench.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]:-}"; do [ -n "$p" ] && kill -INT "$p" 2>/dev/null || true; done
  rm -rf "$work" "/var/run/dpdk/l3b$$"   # DPDK's runtime directory of this script's runs
}
trap cleanup EXIT
py=/usr/bin/python3
mhz=$(awk -F: '/cpu MHz/ {print $2; exit}' /proc/cpuinfo | tr -d ' ')

# 1. DPDK's l3fwd, built from the example sources (or DPDK_L3FWD=binary
# built by an earlier run of this script with KEEP_BUILD=DIR).
src=/usr/share/dpdk/examples
if [ -n "${DPDK_L3FWD:-}" ]; then dpdk_l3fwd=$DPDK_L3FWD; else
[ -d $src/l3fwd ] || { echo "no $src/l3fwd: apt-get install dpdk-doc libdpdk-dev pkg-config" >&2; exit 1; }
mkdir -p "$work/ex"
cp -r $src/l3fwd $src/common "$work/ex/"
sed -i -e 's/#define IPV4_L3FWD_LPM_MAX_RULES .*/#define IPV4_L3FWD_LPM_MAX_RULES (2 << 20)/' \
       -e 's/#define IPV4_L3FWD_LPM_NUMBER_TBL8S .*/#define IPV4_L3FWD_LPM_NUMBER_TBL8S (1 << 17)/' \
       "$work/ex/l3fwd/l3fwd_lpm.c"
# net_pcap has no RX checksum offload (l3fwd asks for it and would refuse to start).
sed -i 's/\.offloads = RTE_ETH_RX_OFFLOAD_CHECKSUM,/.offloads = 0,/' "$work/ex/l3fwd/main.c"
echo "building DPDK l3fwd ($(pkg-config --modversion libdpdk)) in $work/ex/l3fwd ..." >&2
make -s -C "$work/ex/l3fwd" >"$work/build.log" 2>&1 || { cat "$work/build.log" >&2; exit 1; }
dpdk_l3fwd="$work/ex/l3fwd/build/l3fwd"
if [ -n "${KEEP_BUILD:-}" ]; then mkdir -p "$KEEP_BUILD"; cp -L "$dpdk_l3fwd" "$KEEP_BUILD/l3fwd"; fi
fi

# 2. xfwd (release).
[ -n "${NO_BUILD:-}" ] || (cd "$here" && cargo build --release -q -p xfwd)
xfwd="${XFWD:-${CARGO_TARGET_DIR:-$here/target}/release/xfwd}"

# 3. Tables and traces: one generator writes both formats.
gen() { # lookup size → $work/{lookup}-{size}.{xfwd,dpdk,pcap}
  $py - "$1" "$2" "$work" <<'EOF'
import random, struct, sys
lookup, n, work = sys.argv[1], int(sys.argv[2]), sys.argv[3]
random.seed(n * 7 + (lookup == "em"))
base = f"{work}/{lookup}-{n}"
def ip(a): return f"{a>>24}.{(a>>16)&255}.{(a>>8)&255}.{a&255}"
dsts = []   # (dst, src) per trace frame
if lookup == "lpm":
    routes = []
    if n == 16:
        routes = [((198 << 24) | (18 << 16) | (i << 8), 24) for i in range(16)]
    else:
        seen = set()
        while len(seen) < n - n // 16:
            seen.add(random.randrange(1 << 16, 224 << 16))
        s24 = list(seen)
        routes = [(x << 8, 24) for x in s24]
        for x in random.sample(s24, n // 16):
            d = random.randint(25, 32)
            routes.append(((x << 8) | (random.randrange(256) & (0xff << (32 - d)) & 0xff), d))
    with open(base + ".xfwd", "w") as fx, open(base + ".dpdk", "w") as fd:
        for a, d in routes:
            fx.write(f"{ip(a)}/{d} 0\n")
            fd.write(f"R{ip(a)}/{d} 0\n")
    for _ in range(4096):
        a, d = random.choice(routes)
        host = random.randrange(1 << (32 - d)) if d < 32 else 0
        dsts.append((a | host, 0x0a000001))
else:
    flows = set()
    if n == 16:
        flows = {((198 << 24) | (18 << 16) | (i << 8), (198 << 24) | (18 << 16) | (i << 8) | 1) for i in range(16)}
    while len(flows) < n:
        flows.add((random.randrange(1 << 24, 224 << 24), random.randrange(1 << 24, 224 << 24)))
    flows = list(flows)
    with open(base + ".xfwd", "w") as fx, open(base + ".dpdk", "w") as fd:
        for d, s in flows:
            fx.write(f"{ip(s)} {ip(d)} 9 9 17 0\n")
            fd.write(f"R{ip(d)} {ip(s)} 9 9 0x11 0\n")
    for _ in range(4096):
        d, s = random.choice(flows)
        dsts.append((d, s))
with open(base + ".v6.dpdk", "w") as f:
    f.write("R2001:200:0:1::/64 0\n" if lookup == "lpm" else "R2001:200:0:1::1 2001:200:0:1::2 9 9 0x11 0\n")
def csum(h):
    s = sum(struct.unpack("!10H", h))
    while s > 0xffff: s = (s & 0xffff) + (s >> 16)
    return (~s) & 0xffff
out = bytearray(struct.pack("<IHHiIII", 0xa1b2c3d4, 2, 4, 0, 0, 65535, 1))
for i, (d, s) in enumerate(dsts):
    udp = struct.pack("!HHHH", 9, 9, 8 + 18, 0) + bytes(18)
    iph = struct.pack("!BBHHHBBHII", 0x45, 0, 20 + len(udp), i & 0xffff, 0, 64, 17, 0, s, d)
    iph = iph[:10] + struct.pack("!H", csum(iph)) + iph[12:]
    fr = bytes.fromhex("020000000002020000000001") + b"\x08\x00" + iph + udp
    out += struct.pack("<IIII", i, 0, len(fr), len(fr)) + fr
open(base + ".pcap", "wb").write(out)
EOF
}

# DPDK telemetry: a port's opackets.
dpdk_opackets() { # prefix
  $py - "$1" <<'EOF'
import socket, json, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
s.connect(f"/var/run/dpdk/{sys.argv[1]}/dpdk_telemetry.v2")
s.recv(4096)
s.send(b"/ethdev/stats,0")
print(json.loads(s.recv(65536))["/ethdev/stats"]["opackets"])
EOF
}

# xfwd telemetry: port 0's TX packets.
xfwd_opackets() { # socket
  $py - "$1" <<'EOF'
import socket, json, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect(sys.argv[1])
f = s.makefile("rwb")
f.readline()
f.write(b"/ports/0/stats\n"); f.flush()
print(json.loads(f.readline())["tx_packets"])
EOF
}

# The measured window of a running forwarder: packets sent (read by $2
# before and after) and, over the same window, the CPU time the process
# ran (perf stat -p task-clock: a preempted forwarder does not look
# slower per packet; this VM has no hardware counters, so cycles are CPU
# ns × the nominal MHz). Prints "Mpps cycles/pkt".
window() { # pid read-command...
  local pid=$1; shift
  local a b t0 t1 ps="$work/perf.$pid"
  a=$("$@"); t0=$(date +%s.%N)
  perf stat -x, -e task-clock -p "$pid" -o "$ps" -- sleep "$secs" 2>/dev/null || true
  b=$("$@"); t1=$(date +%s.%N)
  [ -n "${VERBOSE:-}" ] && echo "packets $a -> $b; $(grep task-clock "$ps")" >&2
  local ms
  ms=$(awk -F, '$3 ~ /^task-clock/ {print $1}' "$ps" 2>/dev/null)
  echo "$a $b $t0 $t1 ${ms:-0}" | awk -v mhz="$mhz" '{d = $2 - $1; if (d <= 0) {print "0 0"; exit}
    printf "%.3f %.0f\n", d / ($4 - $3) / 1e6, ($5 ~ /^[0-9.]+$/ ? $5 * 1e3 * mhz / d : 0)}'
}

run_dpdk() { # lookup size → "Mpps cycles/pkt"
  local pre="l3b$$" log="$work/dpdk.log"
  "$dpdk_l3fwd" -l 1 --no-pci --file-prefix=$pre --huge-unlink \
    --vdev="net_pcap0,rx_pcap=$work/$1-$2.pcap,infinite_rx=1" -- -p 0x1 --config="(0,0,1)" \
    --parse-ptype --lookup="$1" --rule_ipv4="$work/$1-$2.dpdk" --rule_ipv6="$work/$1-$2.v6.dpdk" \
    --eth-dest=0,02:00:00:00:00:09 >"$log" 2>&1 &
  local pid=$!; pids+=("$pid")
  local t=0
  until [ -S /var/run/dpdk/$pre/dpdk_telemetry.v2 ] && grep -q "entering main loop" "$log"; do
    sleep 0.2; t=$((t+1))
    if [ $t -gt $((dpdk_wait * 5)) ] || ! kill -0 $pid 2>/dev/null; then
      echo "DPDK l3fwd did not start forwarding within ${dpdk_wait} s ($(grep -c 'Adding route' "$log") routes added):" >&2
      grep -v 'Adding route' "$log" | tail -3 >&2
      kill -KILL $pid 2>/dev/null || true; wait $pid 2>/dev/null || true
      echo "0 0"; return
    fi
  done
  sleep 1
  window "$pid" dpdk_opackets "$pre"
  kill -INT $pid; wait $pid 2>/dev/null || true
}

run_xfwd() { # lookup size [binary] → "Mpps cycles/pkt"
  local sock="$work/xfwd.sock"
  rm -f "$sock"
  "${3:-$xfwd}" --port "pcap:rx=$work/$1-$2.pcap,loop=infinite" --forward-mode l3fwd --lookup "$1" \
    --route-file "$work/$1-$2.xfwd" --eth-dest 0,02:00:00:00:00:09 -l 1 --telemetry "$sock" \
    --stats-period 0 >"$work/xfwd.out" 2>"$work/xfwd.err" &
  local pid=$!; pids+=("$pid")
  local t=0
  until [ -S "$sock" ]; do
    sleep 0.2; t=$((t+1))
    if [ $t -gt 300 ] || ! kill -0 $pid 2>/dev/null; then
      tail -3 "$work/xfwd.err" >&2; kill -KILL $pid 2>/dev/null || true; wait $pid 2>/dev/null || true
      echo "0 0"; return
    fi
  done
  sleep 1
  window "$pid" xfwd_opackets "$sock"
  kill -INT $pid; wait $pid 2>/dev/null || true
}

med() { tr ' ' '\n' | grep -v '^$' | sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

echo "| lookup | table | xfwd Mpps (median; runs) | DPDK l3fwd Mpps (median; runs) | xfwd / DPDK | cycles/pkt xfwd / DPDK (CPU time, median) | xfwd table load |"
echo "|---|---|---|---|---|---|---|"
for lk in $lookups; do
  for n in $sizes; do
    gen "$lk" "$n"
    t0=$(date +%s.%N)
    "$xfwd" check --port "pcap:rx=$work/$lk-$n.pcap" --forward-mode l3fwd --lookup "$lk" \
      --route-file "$work/$lk-$n.xfwd" --eth-dest 0,02:00:00:00:00:09 --no-huge >/dev/null
    load=$(echo "$t0 $(date +%s.%N)" | awk '{printf "%.2f s", $2-$1}')
    xs="" ds="" xc="" dc="" bs="" bc=""
    for _ in $(seq "$runs"); do
      read -r m c < <(run_xfwd "$lk" "$n"); xs="$xs $m" xc="$xc $c"
      if [ -n "${XFWD_B:-}" ]; then read -r m c < <(run_xfwd "$lk" "$n" "$XFWD_B"); bs="$bs $m" bc="$bc $c"; fi
      [ -n "${NO_DPDK:-}" ] && continue
      read -r m c < <(run_dpdk "$lk" "$n"); ds="$ds $m" dc="$dc $c"
    done
    if [ -n "${XFWD_B:-}" ]; then
      echo "| $lk | $n | B: $(echo "$bs" | med) ($(echo $bs | tr ' ' '/')) Mpps, $(echo "$bc" | med) cycles/pkt |" >&2
    fi
    xm=$(echo "$xs" | med); dm=$(echo "${ds:-0}" | med)
    echo "| $lk | $n | $xm ($(echo $xs | tr ' ' '/')) | $dm ($(echo $ds | tr ' ' '/')) | $(awk -v a="$xm" -v b="$dm" 'BEGIN {printf (b > 0 ? "%.2f×" : "-"), a / b}') | $(echo "$xc" | med) / $(echo "${dc:-0}" | med) | $load |"
  done
done
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
