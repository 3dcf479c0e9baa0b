#!/usr/bin/env bash
# The test network: three namespaces in a line, fwd in the middle.
#
#   PREFIX-gen                 PREFIX-fwd                  PREFIX-sink
#   PREFIX-g 198.18.0.2/24 --- PREFIX-a 198.18.0.1/24
#            2001:db8:a::2/64           2001:db8:a::1/64
#                                       PREFIX-b 198.19.0.1/24 --- PREFIX-s 198.19.0.2/24
#                                                2001:db8:b::1/64           2001:db8:b::2/64
#                                                                  lo 198.19.128.1/24, 2001:db8:c::1/64
#
# The kernel of PREFIX-fwd does not forward (ip_forward=0): what crosses it, fwd
# forwarded. Checksum and segmentation offloads are off on every veth, so frames on
# the wire carry real checksums (AF_XDP sees the bytes, not skb metadata).
#
# Usage: scripts/testbed.sh up|down [PREFIX]    (PREFIX: up to 12 characters, default "fwd")
# QUEUES=N in the environment gives every veth N RX/TX queues (default 1).
set -euo pipefail

cmd=${1:-}
P=${2:-fwd}
if [ ${#P} -gt 12 ]; then
  echo "testbed: prefix '$P' is longer than 12 characters (interface names are at most 15)" >&2
  exit 2
fi
GEN=$P-gen FWD=$P-fwd SINK=$P-sink

down() {
  for ns in "$GEN" "$FWD" "$SINK"; do
    ip netns del "$ns" 2>/dev/null || true
  done
}

offloads_off() { # ns dev
  ip netns exec "$1" ethtool -K "$2" tx off rx off tso off gso off gro off >/dev/null 2>&1 || true
}

up() {
  down
  for ns in "$GEN" "$FWD" "$SINK"; do
    ip netns add "$ns"
    ip -n "$ns" link set lo up
  done
  # Before the veths exist, so they inherit "default": no DAD, addresses usable at once.
  ip netns exec "$FWD" sysctl -qw net.ipv4.ip_forward=0 net.ipv6.conf.all.forwarding=0
  for ns in "$GEN" "$FWD" "$SINK"; do
    ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0
  done
  q="numtxqueues ${QUEUES:-1} numrxqueues ${QUEUES:-1}"
  # shellcheck disable=SC2086
  ip link add "$P-g" netns "$GEN" $q type veth peer name "$P-a" netns "$FWD" $q
  # shellcheck disable=SC2086
  ip link add "$P-s" netns "$SINK" $q type veth peer name "$P-b" netns "$FWD" $q

  ip -n "$GEN" addr add 198.18.0.2/24 dev "$P-g"
  ip -n "$GEN" addr add 2001:db8:a::2/64 dev "$P-g" nodad
  ip -n "$FWD" addr add 198.18.0.1/24 dev "$P-a"
  ip -n "$FWD" addr add 2001:db8:a::1/64 dev "$P-a" nodad
  ip -n "$FWD" addr add 198.19.0.1/24 dev "$P-b"
  ip -n "$FWD" addr add 2001:db8:b::1/64 dev "$P-b" nodad
  ip -n "$SINK" addr add 198.19.0.2/24 dev "$P-s"
  ip -n "$SINK" addr add 2001:db8:b::2/64 dev "$P-s" nodad
  ip -n "$SINK" addr add 198.19.128.1/24 dev lo
  ip -n "$SINK" addr add 2001:db8:c::1/64 dev lo nodad

  for pair in "$GEN:$P-g" "$FWD:$P-a" "$FWD:$P-b" "$SINK:$P-s"; do
    ns=${pair%%:*} dev=${pair#*:}
    offloads_off "$ns" "$dev"
    ip -n "$ns" link set "$dev" up
  done

  ip -n "$GEN" route add default via 198.18.0.1
  ip -n "$GEN" -6 route add default via 2001:db8:a::1
  ip -n "$SINK" route add default via 198.19.0.1
  ip -n "$SINK" -6 route add default via 2001:db8:b::1
}

case "$cmd" in
  up) up ;;
  down) down ;;
  *)
    sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
    ;;
esac
