#!/bin/sh
# Installs what ctnet's build, tests and tour need on Debian 12 (as root).
# ctnet itself needs none of nft, iptables or brctl: it talks netlink. Tests
# use some of these tools to look at what ctnet did (brctl show, nft list,
# ping, socat, dig) and runc/busybox to run real containers.
#
# Services that come with a package (dockerd, containerd, ovsdb, etcd) are
# never started by the installation: tests start their own, inside sandboxes.
# Another apt or dpkg at work (unattended-upgrades on a fresh machine) is
# waited for, not an error.
set -eu
PKGS="iproute2 iputils-ping socat nftables bridge-utils runc crun busybox-static util-linux bind9-dnsutils etcd-server etcd-client openvswitch-switch chromium fonts-liberation graphviz docker.io iperf3"
# CNI (issue 12): the reference plugins, and the runtimes the e2e tests drive ctnet with.
PKGS="$PKGS containernetworking-plugins containerd podman"
missing=""
for p in $PKGS; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
	echo "installing:$missing"
	export DEBIAN_FRONTEND=noninteractive
	# invoke-rc.d asks policy-rc.d before starting a service; 101 = "not now".
	policy=/usr/sbin/policy-rc.d
	made_policy=""
	if [ ! -e "$policy" ]; then
		printf '#!/bin/sh\nexit 101\n' >"$policy"
		chmod 755 "$policy"
		made_policy=1
	fi
	trap '[ -z "$made_policy" ] || rm -f "$policy"' EXIT
	lock="-o DPkg::Lock::Timeout=600"
	# apt-get update does not wait for the lists lock: retry while it is held.
	for i in $(seq 120); do
		if out=$(apt-get $lock update -qq 2>&1); then break; fi
		case "$out" in
		*"Could not get lock"*|*"Unable to lock"*)
			[ "$i" = 1 ] && echo "waiting for another apt to finish"
			[ "$i" = 120 ] && { echo "$out" >&2; exit 1; }
			sleep "${CTNET_APT_RETRY_SECONDS:-5}" ;;
		*) echo "$out" >&2; exit 1 ;;
		esac
	done
	apt-get $lock install -y -qq --no-install-recommends $missing >/dev/null
fi
if ! command -v go >/dev/null 2>&1; then
	export PATH="$PATH:/usr/local/go/bin"
fi
command -v go >/dev/null || { echo "Go is needed (https://go.dev/dl); put it on PATH" >&2; exit 1; }
go mod download
# CNI (issue 12): the clients of the e2e tests, from the module proxy.
[ -x "$(go env GOPATH)/bin/cnitool" ] || go install github.com/containernetworking/cni/cnitool@v1.3.1
[ -x "$(go env GOPATH)/bin/crictl" ] || go install sigs.k8s.io/cri-tools/cmd/crictl@v1.37.0
