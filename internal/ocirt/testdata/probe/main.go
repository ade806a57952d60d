// Command probe is a tiny static program the tests run inside busybox
// containers for what busybox cannot do; the tests build it with
// CGO_ENABLED=0. "ping ADDR" sends one ICMP echo over an unprivileged ICMP
// socket (SOCK_DGRAM, allowed by net.ipv4.ping_group_range; busybox's ping
// only knows raw sockets) and prints "pong" when the reply comes.
package main

import (
	"fmt"
	"net/netip"
	"os"

	"golang.org/x/sys/unix"
)

func main() {
	if len(os.Args) != 3 || os.Args[1] != "ping" {
		fmt.Fprintln(os.Stderr, "usage: probe ping ADDR")
		os.Exit(2)
	}
	if err := ping(os.Args[2]); err != nil {
		fmt.Fprintln(os.Stderr, "probe:", err)
		os.Exit(1)
	}
	fmt.Println("pong")
}

func ping(addr string) error {
	ip, err := netip.ParseAddr(addr)
	if err != nil || !ip.Is4() {
		return fmt.Errorf("want an IPv4 address, not %q", addr)
	}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM, unix.IPPROTO_ICMP)
	if err != nil {
		return fmt.Errorf("icmp socket: %w", err)
	}
	defer unix.Close(fd)
	unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Sec: 5})
	to := &unix.SockaddrInet4{Addr: ip.As4()}
	// echo request: type 8, code 0; the kernel fills in id and checksum
	if err := unix.Sendto(fd, []byte{8, 0, 0, 0, 0, 0, 0, 1, 'c', 't'}, 0, to); err != nil {
		return fmt.Errorf("send: %w", err)
	}
	buf := make([]byte, 64)
	n, _, err := unix.Recvfrom(fd, buf, 0)
	if err != nil {
		return fmt.Errorf("receive: %w", err)
	}
	if n < 1 || buf[0] != 0 {
		return fmt.Errorf("not an echo reply: % x", buf[:n])
	}
	return nil
}
