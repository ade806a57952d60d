#!/usr/bin/env bash
# bench/run.sh [--quick] [bnbench flags…] — ctnet against docker, CNI and netavark.
# Installs the peers, builds ctnet and the benchmark, measures every tool in its own
# sandbox namespace (never the machine's) and writes bench/RESULTS.md
# (bench/RESULTS.quick.md with --quick). Everything it creates is removed on exit.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
export PATH=$PATH:/usr/local/go/bin:/usr/sbin:/sbin

if [ "$(id -u)" != 0 ]; then
	echo "bench/run.sh: needs root (creates network and mount namespaces); run it with sudo" >&2
	exit 1
fi

quick=0
out=$here/RESULTS.md
args=()
prev=
for a in "$@"; do
	case $a in
	--quick) quick=1; out=$here/RESULTS.quick.md; args+=(-quick) ;;
	*) [ "$prev" = -out ] && out=$a; args+=("$a") ;;
	esac
	prev=$a
done

tmp=$(mktemp -d /tmp/bn-bench.XXXXXX)
pid=
policy=
cleanup() {
	set +e
	if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
		kill -TERM "$pid"
		wait "$pid"
	fi
	[ -n "$policy" ] && rm -f "$policy"
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

# Peers from Debian's archive. policy-rc.d keeps apt from starting dockerd or
# containerd in the machine's own namespace while installing.
pkgs=(containernetworking-plugins netavark iperf3 docker.io busybox-static iproute2 iptables util-linux)
missing=()
for p in "${pkgs[@]}"; do
	dpkg-query -W -f '${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
	if [ ! -e /usr/sbin/policy-rc.d ]; then
		policy=/usr/sbin/policy-rc.d
		printf '#!/bin/sh\nexit 101\n' >"$policy"
		chmod 755 "$policy"
	fi
	apt-get update -qq
	export DEBIAN_FRONTEND=noninteractive
	apt-get install -y -qq --no-install-recommends "${missing[@]}" ||
		for p in "${missing[@]}"; do apt-get install -y -qq --no-install-recommends "$p" || echo "bench: $p unavailable" >&2; done
	[ -n "$policy" ] && rm -f "$policy" && policy=
fi

# ctnet from this tree (or CTNET_BIN), the floor, a Go hello-world and the benchmark driver.
cd "$repo"
if [ -n "${CTNET_BIN:-}" ]; then
	cp "$CTNET_BIN" "$tmp/ctnet"
else
	go build -o "$tmp/ctnet" ./cmd/ctnet
fi
go build -o "$tmp/floor" ./bench/cmd/floor
go build -o "$tmp/hello" ./bench/cmd/hello
go build -o "$tmp/bnbench" ./bench/cmd/bnbench

cmdline="${CTNET_BIN:+CTNET_BIN=$CTNET_BIN }bench/run.sh${*:+ $*}"
CTNET_SRC=$repo "$tmp/bnbench" run -base "$tmp" -ctnet "$tmp/ctnet" -floor "$tmp/floor" -hello "$tmp/hello" \
	-out "$out" -command "$cmdline" "${args[@]}" &
pid=$!
rc=0
wait "$pid" || rc=$?
pid=
echo "bench: report in $out" >&2
exit "$rc"
