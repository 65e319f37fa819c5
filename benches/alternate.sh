#!/usr/bin/env bash
# benches/alternate.sh — two revisions of xfwd, alternating runs, on the
# xfwd-bench scenarios: is the new one within noise of the old one?
#
#   benches/alternate.sh OLD NEW [ROUNDS] [SCENARIOS]
#     OLD, NEW    git revisions (e.g. b7ae583 main)
#     ROUNDS      old,new pairs per scenario (default 3)
#     SCENARIOS   xfwd-bench scenarios, comma-separated
#                 (default null-io,ring,af_xdp-veth)
#   env: WARMUP, MEASURE   seconds of each run (default 0.5, 2)
#        JOBS              cargo -j (default 2)
#        KEEP=1            keep the scratch directory (its path is printed)
#        SCRATCH=DIR       use DIR as the scratch directory and keep it; the
#                          worktrees and builds a kept run left there are
#                          reused (cargo rebuilds nothing that is current)
#
# Builds each revision's xfwd in release into its own target directory (a
# detached git worktree each, in a scratch directory removed at exit; the
# second target directory starts as a copy of the first so the dependencies
# are not built twice), and the harness (xfwd-bench) once, from the tree
# this script is in (so both revisions meet the same harness). Then
# round by round, scenario by scenario: xfwd-bench with OLD's binary, then
# with NEW's (`--runs 1 --no-sweep --no-latency --no-rfc2544`: one
# discarded warm-up run and one measured run of each tool, so every xfwd
# figure has a same-minute testpmd figure beside it). Prints every run, then per scenario the median Mpps of OLD and NEW,
# new/old of the medians, and new/old of the medians of xfwd/testpmd (the
# ratio that cancels the machine's drift between runs).
#
# Needs what scripts/bench needs (root, 2M hugepages, dpdk-testpmd,
# iproute2). The topology and testpmd's file prefixes carry
# XFWD_BENCH_TAG (default: alt$$), so a benchmark of someone else on the
# host keeps its own. The hugepage reservation is put back at exit if the
# harness raised it.
set -euo pipefail

old=${1:?usage: benches/alternate.sh OLD NEW [ROUNDS] [SCENARIOS]}
new=${2:?usage: benches/alternate.sh OLD NEW [ROUNDS] [SCENARIOS]}
rounds=${3:-3}
scenarios=${4:-null-io,ring,af_xdp-veth}
warmup=${WARMUP:-0.5}
measure=${MEASURE:-2}
jobs=${JOBS:-2}
root=$(cd "$(dirname "$0")/.." && pwd)
export XFWD_BENCH_TAG=${XFWD_BENCH_TAG:-alt$$}

old_rev=$(git -C "$root" rev-parse --verify "$old^{commit}")
new_rev=$(git -C "$root" rev-parse --verify "$new^{commit}")
keep=${KEEP:-0}
if [ -n "${SCRATCH:-}" ]; then
    scratch=$SCRATCH keep=1
    mkdir -p "$scratch"
else
    scratch=$(mktemp -d "${TMPDIR:-/tmp}/xfwd-alternate.XXXXXX")
fi
hp=/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages
hp_before=$(cat "$hp" 2>/dev/null || echo "")

cleanup() {
    local rc=$?
    if [ "$keep" != 1 ]; then
        for w in old new; do
            [ -d "$scratch/$w" ] && git -C "$root" worktree remove --force "$scratch/$w" 2>/dev/null || true
        done
        git -C "$root" worktree prune 2>/dev/null || true
    fi
    if [ -n "$hp_before" ] && [ "$(cat "$hp")" -gt "$hp_before" ]; then
        echo "$hp_before" >"$hp" 2>/dev/null || true
    fi
    if [ "$keep" = 1 ]; then
        echo "alternate: kept $scratch" >&2
    else
        rm -rf "$scratch"
    fi
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

build() { # NAME REV
    local w=$scratch/$1
    [ -d "$w" ] || git -C "$root" worktree add -q --detach "$w" "$2"
    echo "alternate: building $1 ($2) in release" >&2
    (cd "$w" && CARGO_TARGET_DIR=$scratch/tgt-$1 cargo build -q --release -j"$jobs" -p xfwd --bin xfwd)
}
t0=$(date +%s)
build old "$old_rev"
[ -d "$scratch/tgt-new" ] || cp -a "$scratch/tgt-old" "$scratch/tgt-new"
build new "$new_rev"
(cd "$root" && CARGO_TARGET_DIR=$scratch/tgt-new cargo build -q --release -j"$jobs" \
    -p xfwd-benches --bin xfwd-bench)
bench=$scratch/tgt-new/release/xfwd-bench
echo "alternate: built in $(($(date +%s) - t0)) s" >&2

runs=$scratch/runs.tsv
: >"$runs"
IFS=, read -r -a list <<<"$scenarios"
for r in $(seq 1 "$rounds"); do
    for sc in "${list[@]}"; do
        for w in old new; do
            out=$scratch/out-$w-$sc-$r
            "$bench" --runs 1 --warmup "$warmup" --measure "$measure" --reruns 0 \
                --no-sweep --no-latency --no-rfc2544 --scenarios "$sc" \
                --xfwd "$scratch/tgt-$w/release/xfwd" --out "$out" --md "$out/BENCHMARKS.md" \
                >"$out.log" 2>&1 || { echo "alternate: xfwd-bench failed, see below" >&2; tail -20 "$out.log" >&2; exit 1; }
            python3 - "$out/results.json" "$w" "$r" >>"$runs" <<'EOF'
import json, sys
res = json.load(open(sys.argv[1]))
load = open("/proc/loadavg").read().split()[0]
for s in res["scenarios"]:
    o, p = s["ours"], s["peer"]
    print("\t".join([s["name"], sys.argv[2], sys.argv[3], "%.4f" % o["mpps"]["median"],
                     "%.4f" % p["mpps"]["median"], o["status"], p["status"], load]))
EOF
            tail -1 "$runs" >&2
        done
    done
done

python3 - "$runs" "$old" "$new" "$old_rev" "$new_rev" "$rounds" "$warmup" "$measure" <<'EOF'
import statistics as st, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
old, new, orev, nrev, rounds, warmup, measure = sys.argv[2:]
print(f"old {old} ({orev[:10]}) vs new {new} ({nrev[:10]}): {rounds} alternating rounds, "
      f"each run {warmup} s warm-up + {measure} s measured (xfwd-bench --runs 1)")
print("\nscenario        round  rev  xfwd Mpps  testpmd Mpps  xfwd/testpmd  status (xfwd/testpmd)  load1")
for n, w, r, x, t, sx, sp, ld in rows:
    ratio = float(x) / float(t) if float(t) > 0 else float("nan")
    print(f"{n:<15} {r:>5}  {w:<3}  {float(x):9.3f}  {float(t):12.3f}  {ratio:12.3f}  {sx + '/' + sp:<22} {ld}")
print("\nscenario        old Mpps (min-max)       new Mpps (min-max)       new/old  new/old of xfwd/testpmd")
for n in dict.fromkeys(r[0] for r in rows):
    def side(w):
        x = [float(r[3]) for r in rows if r[0] == n and r[1] == w]
        q = [float(r[3]) / float(r[4]) for r in rows if r[0] == n and r[1] == w and float(r[4]) > 0]
        return x, q
    (xo, qo), (xn, qn) = side("old"), side("new")
    mo, mn = st.median(xo), st.median(xn)
    rq = st.median(qn) / st.median(qo) if qo and qn else float("nan")
    print(f"{n:<15} {mo:6.3f} ({min(xo):.3f}-{max(xo):.3f})      {mn:6.3f} ({min(xn):.3f}-{max(xn):.3f})      "
          f"{mn / mo:6.3f}   {rq:6.3f}")
EOF
