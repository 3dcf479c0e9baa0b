#!/usr/bin/env bash
# Builds fwd (release) and installs the binary, an example config and the systemd
# unit. Usage: scripts/install.sh [PREFIX]   (default /usr/local; as root)
set -euo pipefail
cd "$(dirname "$0")/.."
PREFIX=${1:-/usr/local}
scripts/install-deps.sh
cargo build --release --quiet -p fwd
install -D -m 0755 target/release/fwd "$PREFIX/bin/fwd"
if [ ! -e /etc/fwd/fwd.toml ]; then
  install -D -m 0644 configs/router.toml /etc/fwd/fwd.toml
  echo "install: wrote /etc/fwd/fwd.toml from configs/router.toml: edit its ports first"
fi
if [ -d /etc/systemd/system ]; then
  sed "s|/usr/local/bin/fwd|$PREFIX/bin/fwd|g" scripts/fwd.service > /etc/systemd/system/fwd.service
  echo "install: /etc/systemd/system/fwd.service (systemctl daemon-reload && systemctl enable --now fwd)"
fi
echo "install: $PREFIX/bin/fwd $("$PREFIX/bin/fwd" --version)"
