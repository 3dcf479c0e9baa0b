#!/usr/bin/env bash
# Installs what building and testing fwd needs on a fresh Debian machine, and mounts bpffs.
# Idempotent: does nothing that is already done. Needs root.
set -euo pipefail

PKGS=(
  # libxdp-sys / libbpf-sys build C
  m4 clang llvm libelf-dev zlib1g-dev pkg-config make
  # bpf_helpers.h for bpf/*.bpf.c
  libbpf-dev
  # testbed and tests
  iproute2 iputils-ping ethtool iptables nftables ipset iperf3 tcpdump socat bpftool
  python3-scapy python3-matplotlib
  # conntrack -L: the kernel's table in fwd/tests/ct_differential.rs
  conntrack
  # /usr/bin/time: peak memory of `fwd check` on huge configs (config_hostility.rs)
  time
)

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "install-deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! mountpoint -q /sys/fs/bpf; then
  mount -t bpf bpf /sys/fs/bpf
fi
