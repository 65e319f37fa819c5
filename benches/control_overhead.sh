#!/usr/bin/env bash
# Alternating null-io runs (configs/null-bench.toml, one worker on CPU 1, --no-huge):
# plain | --telemetry + --metrics enabled, idle | enabled with clients (curl /metrics and
# `xfwd ctl show port stats all` every 0.2 s, each a new process).
set -u
X=${X:-target/release/xfwd}
runs=${1:-5}; secs=${2:-3}
one() {
  mode=$1; S=/tmp/ctlb-$$.sock
  case $mode in
    plain) $X --config configs/null-bench.toml --no-huge --duration $secs --stats-period 0 --json > /tmp/ctlb.json 2>/dev/null;;
    idle) $X --config configs/null-bench.toml --no-huge --duration $secs --stats-period 0 --json --telemetry $S --metrics 127.0.0.1:19465 > /tmp/ctlb.json 2>/dev/null;;
    clients)
      $X --config configs/null-bench.toml --no-huge --duration $secs --stats-period 0 --json --telemetry $S --metrics 127.0.0.1:19465 > /tmp/ctlb.json 2>/dev/null &
      pid=$!; sleep 0.3; end=$((SECONDS + secs))
      while kill -0 $pid 2>/dev/null && [ $SECONDS -lt $end ]; do
        curl -s --max-time 1 http://127.0.0.1:19465/metrics > /dev/null
        $X ctl $S show port stats all > /dev/null 2>&1
        sleep 0.2
      done
      wait $pid;;
  esac
  python3 -c "import json;f=json.loads(open('/tmp/ctlb.json').read().splitlines()[-1]);print('$mode', round(f['accumulated']['rx_pps']/1e6,2))"
}
for i in $(seq 1 $runs); do for m in plain idle clients; do one $m; done; done
