#!/usr/bin/env bash
# Runs every test of fwd: installs what is missing, mounts bpffs, then unit,
# property and integration tests (the integration tests build their own network
# namespaces and need root). Usage: scripts/test.sh [extra cargo test args]
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
  echo "test.sh: run as root (AF_XDP, XDP and network namespaces need it)" >&2
  exit 2
fi
scripts/install-deps.sh

echo "test.sh: building"
cargo build --workspace --all-targets --quiet
echo "test.sh: running tests"
# Integration tests each make their own namespaces and pin nothing, so they can run
# side by side; two at a time matches this 2-core machine.
log=$(mktemp /tmp/fwd-test.XXXXXX)
trap 'rm -f "$log"' EXIT
cargo test --workspace -- --test-threads 2 "$@" 2>&1 | tee "$log"
# Fuzzing is opt-in: FWD_FUZZ_SECONDS=60 runs every cargo-fuzz target that long from
# the committed corpus (scripts/fuzz.sh; about 7 min to build cold, 2 min warm).
if [ "${FWD_FUZZ_SECONDS:-0}" -gt 0 ]; then
  scripts/fuzz.sh "$FWD_FUZZ_SECONDS"
fi

# One closing line for the whole run, summed over every test binary.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "test.sh: %d passed, %d failed\n", p, f }' "$log"
