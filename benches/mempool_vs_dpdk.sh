#!/usr/bin/env bash
# xfwd's mbuf pool vs DPDK's rte_mempool on this machine, same loop, same
# minute: alternating runs, medians, ours/DPDK ratio.
#
#   benches/mempool_vs_dpdk.sh [--runs N] [--secs S] [--full]
#
# DPDK side: benches/dpdk/mempool_peer.c (the inner loop of DPDK's
# mempool_perf_autotest over Debian's libdpdk). --full also runs dpdk-test's
# own `mempool_perf_autotest` (about 35 minutes) and prints its rate lines.
# Needs: libdpdk-dev, pkg-config, gcc, 2M hugepages (reserved if missing).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd); root=$(cd "$here/.." && pwd)
runs=5; secs=1; full=0
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) runs=$2; shift 2;; --secs) secs=$2; shift 2;; --full) full=1; shift;;
    -h|--help) sed -n '2,12p' "$0"; exit 0;;
    *) echo "unknown argument $1 (see --help)" >&2; exit 2;;
  esac
done
out=${BENCH_OUT:-$root/bench-out}; mkdir -p "$out"
# DPDK's runtime directories of this script's runs (one prefix per run of the script).
trap 'rm -rf "/var/run/dpdk/xfwdmpb$$" "/var/run/dpdk/xfwdmpt$$"' EXIT
hp=/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages
if [ "$(cat /sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages)" -lt 256 ]; then
  echo $(( $(cat $hp) + 256 )) > $hp
fi
pkg-config --exists libdpdk || { echo "libdpdk-dev is not installed (apt-get install libdpdk-dev pkg-config)" >&2; exit 1; }
gcc -O3 -march=native -o "$out/mempool_peer" "$here/dpdk/mempool_peer.c" $(pkg-config --cflags --libs libdpdk)
# Both sides are built for this CPU: the DPDK loop (whose get/put are inline
# header code) with -march=native, ours with target-cpu=native.
tdir=${CARGO_TARGET_DIR:-$root/target}/bench-native
(cd "$root" && RUSTFLAGS="-C target-cpu=native" CARGO_TARGET_DIR=$tdir cargo build --release -q -p xfwd-benches --bench mempool)
ours=$(ls -t "$tdir"/release/deps/mempool-* | grep -v '\.d$' | head -1)

cases="256:1:32:32 256:1:4:32 256:1:1:32 256:2:32:32 0:1:32:32"
printf '%-28s %12s %12s %7s\n' "case (cache/cores/bulk/keep)" "xfwd Mobj/s" "DPDK Mobj/s" "ratio"
for c in $cases; do
  IFS=: read -r cache cores bulk keep <<<"$c"
  a=(); b=()
  for _ in $(seq "$runs"); do
    a+=("$("$ours" --secs "$secs" --case "$cache,$cores,$bulk,$keep" | sed -n 's/.*rate_persec=//p')")
    b+=("$("$out/mempool_peer" -l 0,1 --no-pci --file-prefix=xfwdmpb$$ --huge-unlink -m 256 --log-level=error \
          -- "$secs" "$cache" "$cores" "$bulk" "$keep" | sed -n 's/.*rate_persec=//p')")
  done
  ma=$(printf '%s\n' "${a[@]}" | sort -n | awk '{v[NR]=$1} END{print v[int((NR+1)/2)]}')
  mb=$(printf '%s\n' "${b[@]}" | sort -n | awk '{v[NR]=$1} END{print v[int((NR+1)/2)]}')
  printf '%-28s %12.1f %12.1f %7.2f\n' "$cache/$cores/$bulk/$keep" "$(echo "$ma/1000000" | bc -l)" \
    "$(echo "$mb/1000000" | bc -l)" "$(echo "$ma/$mb" | bc -l)"
  echo "{\"case\":\"$c\",\"xfwd\":[$(IFS=,; echo "${a[*]}")],\"dpdk\":[$(IFS=,; echo "${b[*]}")]}" >> "$out/mempool_vs_dpdk.jsonl"
done
if [ "$full" = 1 ]; then
  echo "dpdk-test mempool_perf_autotest (long):"
  echo mempool_perf_autotest | timeout 3000 dpdk-test -l 0,1 --no-pci --file-prefix=xfwdmpt$$ --huge-unlink -m 512 \
    | grep rate_persec | tee "$out/dpdk_mempool_perf_autotest.txt"
fi
