#!/usr/bin/env bash
# xfwd null-port forwarding on one worker core against dpdk-testpmd
# (--vdev net_null0 --vdev net_null1, native mempool and --mp-alloc=xmemhuge,
# i.e. external memory on 2M pages), in the same run, alternating, medians and
# ratios, for io and macswap.
#
#   benches/null_vs_testpmd.sh [--runs N] [--secs S]
# Needs root, dpdk-testpmd (apt-get install dpdk), 2M hugepages (raised if needed).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
runs=5 secs=3
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) runs=$2; shift 2;; --secs) secs=$2; shift 2;;
    -h|--help) sed -n '2,9p' "$0"; exit 0;;
    *) echo "unknown argument $1 (see --help)" >&2; exit 2;;
  esac
done
command -v dpdk-testpmd >/dev/null || { echo "dpdk-testpmd missing (apt-get install dpdk)" >&2; exit 1; }
hp=/sys/kernel/mm/hugepages/hugepages-2048kB
[ "$(cat $hp/free_hugepages)" -ge 600 ] || echo $(( $(cat $hp/nr_hugepages) + 600 )) > $hp/nr_hugepages
(cd "$root" && cargo build --release -q -p xfwd)
X=$root/target/release/xfwd

xfwd_mpps() { # mode
  "$X" --port null: --port null: --forward-mode "$1" -l 1 --burst 32 --duration "$secs" --stats-period 0 --json 2>/dev/null \
    | tail -1 | python3 -c 'import json,sys; d=json.loads(sys.stdin.read()); assert d["leaked_mbufs"]==0; print(d["accumulated"]["rx_pps"]/1e6)'
}
testpmd_mpps() { # mode mp-alloc
  # Main lcore 0 idles, forwarding lcore 1; sum of both ports' Rx-pps over the last second.
  # (timeout's SIGINT is how testpmd is stopped: its exit status is not an error)
  { stdbuf -oL timeout -s INT $(( secs + 2 )) dpdk-testpmd -l 0,1 --main-lcore 0 --no-pci --file-prefix=xnullcmp \
    --huge-unlink -m 1024 --log-level=error --vdev=net_null0 --vdev=net_null1 -- --stats-period 1 --nb-cores=1 \
    --forward-mode="$1" --burst=32 --mp-alloc="$2" 2>/dev/null || true; } | grep "Rx-pps" | tail -2 \
    | awk '{s+=$2} END {printf "%.3f\n", s/1e6}'
}
median() { sort -n | awk '{v[NR]=$1} END{print v[int((NR+1)/2)]}'; }

printf '%-9s %10s %16s %18s %9s %11s\n' mode "xfwd Mpps" "testpmd native" "testpmd xmemhuge" "/native" "/xmemhuge"
for mode in io macswap; do
  a=(); b=(); c=()
  for _ in $(seq "$runs"); do
    a+=("$(xfwd_mpps "$mode")"); b+=("$(testpmd_mpps "$mode" native)"); c+=("$(testpmd_mpps "$mode" xmemhuge)")
  done
  ma=$(printf '%s\n' "${a[@]}" | median); mb=$(printf '%s\n' "${b[@]}" | median); mc=$(printf '%s\n' "${c[@]}" | median)
  printf '%-9s %10.1f %16.1f %18.1f %9.2f %11.2f\n' "$mode" "$ma" "$mb" "$mc" "$(echo "$ma/$mb" | bc -l)" "$(echo "$ma/$mc" | bc -l)"
  echo "  runs: xfwd ${a[*]} | native ${b[*]} | xmemhuge ${c[*]}"
done
