#!/bin/bash
# The README's tour, run for real in a throwaway network and mount namespace
# (its "host"), with a second namespace as "the internet" at 203.0.113.1.
# Nothing is changed in this machine's own network namespace, and everything
# the tour makes disappears when it ends.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -z "${CTNET_TOUR_INSIDE:-}" ]; then
	[ "$(id -u)" = 0 ] || { echo "the tour needs root (it makes namespaces): sudo $0" >&2; exit 1; }
	./scripts/deps.sh
	export PATH="$PATH:/usr/local/go/bin"
	echo "building ./ctnet"
	go build -o ctnet ./cmd/ctnet
	exec unshare --net --mount --propagation private env CTNET_TOUR_INSIDE=1 "$0" "$@"
fi

# Inside the throwaway host: its own /sys, state on a tmpfs, /run/netns private.
mount -t sysfs sysfs /sys
state=$(mktemp -d /tmp/ctnet-tour.XXXXXX)
mount -t tmpfs tmpfs "$state"
mkdir -p /run/netns && mount -t tmpfs tmpfs /run/netns
export CTNET_ROOT=$state/root CTNET_RUN_ROOT=$state/run PATH="$PWD:$PATH"
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	rmdir "$state" 2>/dev/null || true
}
trap cleanup EXIT

unshare --net sleep infinity &
up=$!
pids+=("$up")
sleep 0.2
ip link set lo up
ip link add eth0 mtu 1400 type veth peer name eth0 netns "$up"
ip addr add 203.0.113.2/24 dev eth0 && ip link set eth0 up && ip route add default via 203.0.113.1
nsenter --net=/proc/$up/ns/net sh -c 'ip link set lo up; ip addr add 203.0.113.1/24 dev eth0; ip link set eth0 up'

step() {
	printf '\n\033[1m# %s\033[0m\n' "$*"
	"$@"
}

step ctnet network ls
step ip netns add a
step ip netns add b
step ctnet network connect bridge --netns /run/netns/a
step ctnet network connect bridge --netns /run/netns/b --ip 172.17.0.50
step ctnet bridge show
step ip netns exec a ip a
step ip netns exec a ping -c1 -W2 172.17.0.50
step ip netns exec a ping -c1 -W2 203.0.113.1
step ctnet network create --subnet 10.10.0.0/24 web
step ctnet network connect web --netns /run/netns/b
step ctnet network inspect --format '{{.Name}}: {{range .Containers}}{{.Name}} {{.IPv4Address}} {{.MacAddress}}; {{end}}' bridge web
step ctnet network disconnect web --netns /run/netns/b
step ctnet network rm web
step ip netns del a
step ctnet system reconcile
step ctnet network ls
printf '\nThe tour is over; its namespaces and everything in them are gone.\n'
