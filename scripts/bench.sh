#!/usr/bin/env bash
# Benchmarks fwd against Linux forwarding (iptables, nftables, nftables sets) and,
# where installed, dpdk-testpmd, in one run, side by side, on the veth testbed
# (scripts/testbed.sh): max forwarded Mpps, zero-loss throughput (RFC 2544 binary
# search), latency p50/p99/p99.9 at 50% of the zero-loss rate, and CPU time per
# forwarded packet, at 0..10k rules (100k for fwd), 64-byte frames.
#
# Writes results/bench-YYYYmmdd-HHMMSS/{report.md,report.json,mpps_vs_rules.png,.svg,raw.jsonl}.
#
# Usage: scripts/bench.sh [--quick] [--no-install] [--trial SECS] [--rules "0 100 1000"]
#                         [--stateful [--flows "1000 1000000"]]
#   --quick       about a minute: 1 s trials, 10% search resolution, fewer rule counts
#   --no-install  do not apt-get install missing peers (dpdk)
#   --stateful    connection tracking instead of the rules table: fwd vs Linux
#                 conntrack (iptables-legacy) with one stateful ruleset; established-
#                 flow forwarding at each --flows count (set up first: N flows out,
#                 one reply each back), and new connections/s (every frame a flow
#                 no trial sent before, each trial from an empty table). Raises the
#                 kernel's nf_conntrack_max/hashsize for the run and restores them.
# Needs root (namespaces, XDP). Builds with cargo into $CARGO_TARGET_DIR (default target/).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
QUICK=0 INSTALL=1 EXTRA=()
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) QUICK=1 ;;
    --no-install) INSTALL=0 ;;
    --trial|--rules|--flows) EXTRA+=("$1" "$2"); shift ;;
    --stateful) EXTRA+=("$1") ;;
    -h|--help) sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "bench: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
  shift
done
[ "$(id -u)" = 0 ] || { echo "bench: needs root (network namespaces, XDP)" >&2; exit 2; }

TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
OUT=$ROOT/results/bench-$(date +%Y%m%d-%H%M%S)
mkdir -p "$OUT"
echo "bench: results in $OUT" >&2

"$ROOT/scripts/install-deps.sh"
if [ $INSTALL = 1 ] && ! command -v dpdk-testpmd >/dev/null; then
  if apt-cache policy dpdk-dev 2>/dev/null | grep 'Candidate: [0-9]' >/dev/null; then  # not -q: pipefail + SIGPIPE
    # Debian ships dpdk-testpmd in dpdk-dev, and the AF_XDP PMD on its own.
    echo "bench: installing dpdk-dev and the AF_XDP PMD (Debian packages) for the testpmd peer" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends dpdk-dev librte-net-af-xdp23 >/dev/null \
      || echo "bench: installing dpdk failed; the testpmd row will be skipped" >&2
  fi
fi

echo "bench: building (release)" >&2
(cd "$ROOT" && cargo build --release -q -p fwd -p bench)

# A unique testbed, removed on exit even on failure.
P=bn$(( $$ % 100000 ))
cleanup() { "$ROOT/scripts/testbed.sh" down "$P" || true; }
trap cleanup EXIT
trap 'exit 130' INT TERM
"$ROOT/scripts/testbed.sh" up "$P"

ARGS=(--prefix "$P" --bin "$TARGET/release" --out "$OUT")
[ $QUICK = 1 ] && ARGS+=(--quick)
/usr/bin/python3 "$ROOT/scripts/bench/run.py" "${ARGS[@]}" "${EXTRA[@]}"
