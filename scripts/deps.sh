#!/bin/sh
# Installs what ctnet's build, tests and tour need on Debian 12 (as root).
# ctnet itself needs none of nft, iptables or brctl: it talks netlink. Tests
# use some of these tools to look at what ctnet did (brctl show, nft list,
# ping, socat) and runc/busybox to run real containers.
set -eu
PKGS="iproute2 iputils-ping socat nftables bridge-utils runc crun busybox-static util-linux"
missing=""
for p in $PKGS; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
	echo "installing:$missing"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq $missing >/dev/null
fi
if ! command -v go >/dev/null 2>&1; then
	export PATH="$PATH:/usr/local/go/bin"
fi
command -v go >/dev/null || { echo "Go is needed (https://go.dev/dl); put it on PATH" >&2; exit 1; }
go mod download
