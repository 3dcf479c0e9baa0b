#!/usr/bin/env bash
# Soak: fwd under mixed traffic with periodic reloads, for MINUTES (default 10).
# Brings up a testbed (prefix "soak"), runs fwd with configs/router.toml plus a
# small rule set, and keeps iperf3 TCP, a numbered UDP probe stream and ping
# running through it, reloading every 10 s alternating two rule sets. Every 10 s
# it prints fwd's RSS, the UDP/ping loss so far and fwd's drops; at the end a
# verdict: FAIL if fwd died, a reload was refused, RSS grew by more than 16 MiB
# after the first minute, or any good UDP probe or ping was lost. Tears down on
# exit and on INT/TERM.
#
# Usage: scripts/soak.sh [MINUTES]    (root; builds fwd in release first)
set -euo pipefail
cd "$(dirname "$0")/.."

minutes=${1:-10}
if [ "$(id -u)" -ne 0 ]; then
  echo "soak.sh: run as root (namespaces, XDP)" >&2
  exit 2
fi
P=soak
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  scripts/testbed.sh down "$P" || true
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

cargo build --release -q -p fwd --bin fwd
target=${CARGO_TARGET_DIR:-target}
FWD=$(realpath "$target/release/fwd")
PY=python3
tools=fwd/tests/tools

scripts/testbed.sh up "$P"
sock="$work/fwd.sock"
sed -e "s/\"fwd-a\"/\"$P-a\"/" -e "s/\"fwd-b\"/\"$P-b\"/" -e "s#\"/run/fwd/fwd.sock\"#\"$sock\"#" \
  configs/router.toml > "$work/base.toml"
rules_a='
[chains.FORWARD]
policy = "ACCEPT"
rules = [
  { proto = "tcp", dport = "5201", action = "ACCEPT", comment = "iperf3" },
  { proto = "udp", dport = "9", action = "DROP" },
  { proto = "icmp", icmp_type = "echo-request", action = "ACCEPT" },
]'
rules_b='
[sets.nobody]
family = "ipv4"
members = ["198.18.0.200", "198.18.0.201"]

[chains.FORWARD]
policy = "ACCEPT"
rules = [
  { src_set = "nobody", action = "DROP" },
  { proto = "tcp", tcp_flags = "SYN,RST,ACK,FIN/SYN", action = "jump", target = "NEW" },
]

[chains.NEW]
rules = [{ proto = "tcp", dport = "1:1023", action = "DROP" }, { action = "RETURN" }]'
{ cat "$work/base.toml"; echo "$rules_a"; } > "$work/fwd.toml"

ip netns exec "$P-fwd" "$FWD" run -c "$work/fwd.toml" --stats-file "$work/stats.json" \
  > "$work/fwd.log" 2>&1 &
fwd_pid=$!
pids+=("$fwd_pid")
for _ in $(seq 100); do [ -S "$sock" ] && break; sleep 0.1; done
[ -S "$sock" ] || { cat "$work/fwd.log"; echo "soak.sh: fwd did not start" >&2; exit 1; }
ip netns exec "$P-gen" ping -c 2 -W 3 198.19.128.1 >/dev/null

secs=$((minutes * 60))
# Traffic, each bounded by the soak's length.
ip netns exec "$P-sink" iperf3 -s -1 -p 5201 > "$work/iperf-server.log" 2>&1 &
pids+=($!)
sleep 0.5
ip netns exec "$P-gen" iperf3 -c 198.19.128.1 -p 5201 -t "$secs" -b 200M -J \
  > "$work/iperf.json" 2>"$work/iperf.err" &
pids+=($!)
probes=$((secs * 50))   # 50 per second
# A UDP socket on the sink counts the probes (an AF_PACKET sniffer would also see,
# and at 200 Mbit/s drop, the iperf3 stream).
ip netns exec "$P-sink" $PY -c '
import json, socket, sys, time
count, secs = int(sys.argv[1]), float(sys.argv[2])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
s.bind(("0.0.0.0", 7400))
s.settimeout(0.5)
seqs, end = set(), time.time() + secs
while len(seqs) < count and time.time() < end:
    try:
        d = s.recv(2048)
    except socket.timeout:
        continue
    try:
        seqs.add(int(d.split(b" ")[1].rstrip(b"x")))
    except (IndexError, ValueError):
        pass
print(json.dumps({"received": len(seqs)}))' "$probes" $((secs + 15)) > "$work/udp.json" &
sniff_pid=$!
pids+=("$sniff_pid")
sleep 0.5
ip netns exec "$P-gen" $PY "$tools/udp_probe.py" send 198.19.128.1 7400 "$probes" 64 4 20000 &
send_pid=$!
pids+=("$send_pid")
ip netns exec "$P-gen" ping -q -i 0.2 -w "$secs" 2001:db8:c::1 > "$work/ping.log" 2>&1 &
ping_pid=$!
pids+=("$ping_pid")

rss() { awk '/^VmRSS/ {print $2}' "/proc/$fwd_pid/status" 2>/dev/null || echo 0; }
printf "%6s %10s %8s %10s %10s %s\n" t_s rss_kib reloads rx_pkts tx_pkts drops
start=$(date +%s)
reloads=0 refused=0 first_min_rss=0 max_rss=0
while [ $(($(date +%s) - start)) -lt "$secs" ]; do
  sleep 10
  kill -0 "$fwd_pid" 2>/dev/null || { echo "soak.sh: fwd died"; break; }
  if [ $((reloads % 2)) -eq 0 ]; then r=$rules_b; else r=$rules_a; fi
  { cat "$work/base.toml"; echo "$r"; } > "$work/fwd.toml"
  if "$FWD" reload --socket "$sock" >/dev/null 2>>"$work/reload.err"; then :; else refused=$((refused + 1)); fi
  reloads=$((reloads + 1))
  t=$(($(date +%s) - start))
  r_kib=$(rss)
  [ "$t" -ge 60 ] && [ "$first_min_rss" -eq 0 ] && first_min_rss=$r_kib
  [ "$r_kib" -gt "$max_rss" ] && max_rss=$r_kib
  line=$("$FWD" stats --json --socket "$sock" | $PY -c '
import json, sys
s = json.load(sys.stdin)
d = " ".join("%s=%d" % (k, v) for k, v in s["drops"].items() if v)
print(s["ports"][0]["rx_packets"], s["ports"][1]["tx_packets"], d or "-")')
  printf "%6d %10d %8d %10s %10s %s\n" "$t" "$r_kib" "$reloads" $line
done
alive=yes
kill -0 "$fwd_pid" 2>/dev/null || alive=no
wait "$send_pid" || true
wait "$ping_pid" || true
# The sniffer ends once every probe arrived, or 15 s after the soak.
wait "$sniff_pid" 2>/dev/null || true
udp=$(cat "$work/udp.json" 2>/dev/null || echo '{}')
ping_loss=$(grep -o '[0-9.]*% packet loss' "$work/ping.log" || echo "? packet loss")
iperf=$($PY -c '
import json, sys
try:
    j = json.load(open(sys.argv[1]))
    e = j["end"]
    print("%.0f Mbit/s, %d retransmits" % (e["sum_received"]["bits_per_second"] / 1e6, e["sum_sent"]["retransmits"]))
except Exception as ex:
    print("no result (%s)" % ex)' "$work/iperf.json")
received=$(echo "$udp" | $PY -c 'import json,sys; print(json.load(sys.stdin).get("received", 0))' 2>/dev/null || echo 0)
echo
echo "soak: ${minutes} min, $reloads reloads ($refused refused), fwd alive: $alive"
echo "soak: RSS at 1 min ${first_min_rss} KiB, max ${max_rss} KiB"
echo "soak: UDP probes $received of $probes; ping $ping_loss; iperf3 TCP $iperf"
verdict=PASS
[ "$alive" = yes ] || verdict=FAIL
[ "$refused" -eq 0 ] || verdict=FAIL
[ "$received" -eq "$probes" ] || verdict=FAIL
case "$ping_loss" in 0%*) ;; *) verdict=FAIL ;; esac
if [ "$first_min_rss" -gt 0 ] && [ $((max_rss - first_min_rss)) -gt 16384 ]; then verdict=FAIL; fi
echo "soak: $verdict"
[ "$verdict" = PASS ]
