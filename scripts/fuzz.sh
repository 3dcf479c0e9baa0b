#!/usr/bin/env bash
# Runs every cargo-fuzz target for SECONDS each (default 60) from the committed seed
# corpus; fails on the first crash, leaving the input in fuzz/artifacts/TARGET/.
# New inputs libFuzzer finds go to a scratch corpus, not the committed one.
#
# Usage: scripts/fuzz.sh [SECONDS] [TARGET...]
# Env:   CARGO_TARGET_DIR (default fuzz/target)
# Reproduce a crash: RUSTC_BOOTSTRAP=1 cargo fuzz run TARGET fuzz/artifacts/TARGET/crash-...
set -euo pipefail
cd "$(dirname "$0")/.."

secs=${1:-60}
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  targets=(pipeline config iptables_import)
fi

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz.sh: installing cargo-fuzz"
  cargo install --locked cargo-fuzz
fi
# cargo-fuzz needs nightly flags (-Zsanitizer); RUSTC_BOOTSTRAP lets a stable
# toolchain take them.
export RUSTC_BOOTSTRAP=1

start=$(date +%s)
echo "fuzz.sh: building ${targets[*]}"
cargo fuzz build
built=$(date +%s)
echo "fuzz.sh: built in $((built - start)) s"

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
status=0
for t in "${targets[@]}"; do
  mkdir -p "$scratch/$t"
  echo "fuzz.sh: $t for ${secs} s"
  log="$scratch/$t.log"
  if ! cargo fuzz run "$t" "$scratch/$t" "fuzz/corpus/$t" -- \
      -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -max_len=4096 \
      -print_final_stats=1 >"$log" 2>&1; then
    tail -n 60 "$log"
    echo "fuzz.sh: $t FAILED: the input is in fuzz/artifacts/$t/" >&2
    status=1
    continue
  fi
  execs=$(grep -m1 '^stat::number_of_executed_units' "$log" | awk '{print $2}')
  rate=$(grep -m1 '^stat::average_exec_per_sec' "$log" | awk '{print $2}')
  cov=$(grep -E '^#[0-9]+' "$log" | tail -n 1 | grep -o 'cov: [0-9]*' || true)
  echo "fuzz.sh: $t ok: ${execs:-?} runs, ${rate:-?} exec/s, ${cov:-cov: ?}"
done
echo "fuzz.sh: done in $(($(date +%s) - start)) s"
exit $status
