#!/usr/bin/env bash
# fwd end to end: installs what is missing, builds, brings up the testbed, runs fwd
# with configs/router.toml in the middle namespace, sends ping (v4, v6), a TCP stream
# and UDP traffic through it, prints fwd's counters and tears everything down.
# Usage: scripts/demo.sh   (as root; takes about 30 s after the build)
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
  echo "demo.sh: run as root (AF_XDP, XDP and network namespaces need it)" >&2
  exit 2
fi
scripts/install-deps.sh
echo "== building (release)"
cargo build --release --quiet -p fwd
FWD=$PWD/target/release/fwd

P=fwd
cleanup() {
  [ -n "${FWD_PID:-}" ] && kill -INT "$FWD_PID" 2>/dev/null && wait "$FWD_PID" 2>/dev/null || true
  [ -n "${IPERF_PID:-}" ] && kill "$IPERF_PID" 2>/dev/null || true
  scripts/testbed.sh down "$P"
}
trap cleanup EXIT

echo "== testbed: $P-gen <-> $P-fwd (fwd) <-> $P-sink"
scripts/testbed.sh up "$P"
STATS=$(mktemp /tmp/fwd-demo-stats.XXXXXX.json)

echo "== fwd run -c configs/router.toml (in $P-fwd)"
ip netns exec "$P-fwd" "$FWD" run -c configs/router.toml --stats-file "$STATS" &
FWD_PID=$!
for _ in $(seq 50); do [ -s "$STATS" ] && break; sleep 0.1; done

echo "== ping through fwd (IPv4 and IPv6, first packets resolve the next hop)"
ip netns exec "$P-gen" ping -c 3 -i 0.2 -W 2 198.19.0.2
ip netns exec "$P-gen" ping -6 -c 3 -i 0.2 -W 2 2001:db8:b::2
ip netns exec "$P-gen" ping -c 2 -i 0.2 -W 2 198.19.128.1
echo "== traceroute-style: TTL 1 gets time exceeded from fwd"
ip netns exec "$P-gen" ping -c 1 -t 1 -W 2 198.19.0.2 || true

echo "== TCP stream through fwd (iperf3, 5 s)"
ip netns exec "$P-sink" iperf3 -s -1 -B 198.19.0.2 >/dev/null &
IPERF_PID=$!
sleep 0.5
ip netns exec "$P-gen" iperf3 -c 198.19.0.2 -t 5 -f m | grep -E "sender|receiver"
wait "$IPERF_PID" || true

echo "== UDP through fwd (iperf3, 200 Mbit/s, 3 s)"
ip netns exec "$P-sink" iperf3 -s -1 -B 198.19.0.2 >/dev/null &
IPERF_PID=$!
sleep 0.5
ip netns exec "$P-gen" iperf3 -u -b 200M -c 198.19.0.2 -t 3 -f m | grep -E "receiver" || true
wait "$IPERF_PID" || true
IPERF_PID=

echo "== fwd's counters (SIGINT: fwd detaches its XDP programs and prints them)"
kill -INT "$FWD_PID"
wait "$FWD_PID"
FWD_PID=
rm -f "$STATS"
echo "== XDP programs left on the ports: $(ip -n $P-fwd link show | grep -c 'prog/xdp' || true)"
