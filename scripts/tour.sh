#!/bin/bash
# The README's tour, run for real in a throwaway network and mount namespace
# (containers on the default bridge, the brctl view, ip a inside, a ping
# between them, --network host/none/container:, a user network, published
# ports on 127.0.0.1 and [::1], a bare namespace attached, then everything removed)
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

# Inside the throwaway host: its own /sys (keeping the cgroup tree that runc
# needs), state on a tmpfs, /run/netns private.
cg=$(mktemp -d /tmp/ctnet-tour-cg.XXXXXX)
mount --rbind /sys/fs/cgroup "$cg"
mount -t sysfs sysfs /sys
mount --move "$cg" /sys/fs/cgroup
rmdir "$cg"
state=$(mktemp -d /tmp/ctnet-tour.XXXXXX)
mount -t tmpfs tmpfs "$state"
mkdir -p /run/netns && mount -t tmpfs tmpfs /run/netns
export CTNET_ROOT=$state/root CTNET_RUN_ROOT=$state/run PATH="$PWD:$PATH"
# The tour and what it starts live in a cgroup of their own, where ctnet
# attaches the programs that serve ports on [::1] (instead of the cgroup2 root).
cgroot=$(findmnt -n -t cgroup2 -o TARGET | head -1)
if [ -n "$cgroot" ]; then
	export CTNET_CGROUP=$cgroot/ctnet-tour-$$
	mkdir "$CTNET_CGROUP" && echo $$ >"$CTNET_CGROUP/cgroup.procs"
fi
pids=()
cleanup() {
	set +e
	# A tour stopped half-way still removes its containers (and their monitors).
	ctnet ps -aq --no-trunc 2>/dev/null | xargs -r ctnet rm -f >/dev/null 2>&1 || true
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null && wait "$p" 2>/dev/null; done
	umount -l "$state" 2>/dev/null
	rmdir "$state" 2>/dev/null
	if [ -n "${CTNET_CGROUP:-}" ]; then
		echo $$ >"$cgroot/cgroup.procs"
		for _ in $(seq 50); do rmdir "$CTNET_CGROUP" 2>/dev/null && break; sleep 0.1; done
		[ -d "$CTNET_CGROUP" ] && echo "tour: could not remove $CTNET_CGROUP: $(cat "$CTNET_CGROUP/cgroup.procs" | tr '\n' ' ')" >&2
	fi
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
step ctnet images
step ctnet run -d --name one host sleep 600
step ctnet run -d --name two host sleep 600
step ctnet ps
step ctnet bridge show
step ctnet exec one ip a
two_ip=$(ctnet inspect -f '{{.NetworkSettings.IPAddress}}' two)
step ctnet exec one ping -c1 -W2 "$two_ip"
step ctnet exec one ping -c1 -W2 203.0.113.1
step ctnet run --rm --network host host ip -4 -o addr show eth0
step ctnet run --rm --network none host ip -o link
step ctnet run --rm --network container:one host ip -4 -o addr show eth0
step ctnet network create --subnet 10.10.0.0/24 web
step ctnet run --rm --network web --name three host cat /etc/hosts
step ctnet run -d --name web -p 8080:80 -p '[::1]:8081:80' host socat TCP-LISTEN:80,fork,reuseaddr 'SYSTEM:echo hello from web'
step ctnet port web
for _ in $(seq 50); do socat -T1 - TCP:127.0.0.1:8080 </dev/null 2>/dev/null | grep -q hello && break; sleep 0.1; done
step socat -T2 - TCP:127.0.0.1:8080
step socat -T2 - 'TCP:[::1]:8081'
step ctnet topology
step ctnet trace outside 203.0.113.2 8080/tcp
step ip netns add bare
step ctnet explain network connect web --netns /run/netns/bare
step ctnet network connect web --netns /run/netns/bare
step ctnet network inspect --format '{{.Name}}: {{range .Containers}}{{.Name}} {{.IPv4Address}} {{.MacAddress}}; {{end}}' bridge web
step ctnet rm -f one two web
step ctnet network disconnect web --netns /run/netns/bare
step ctnet network rm web
step ctnet system reconcile
step ctnet ps -a
step ctnet bridge show
printf '\nThe tour is over; its namespaces and everything in them are gone.\n'
