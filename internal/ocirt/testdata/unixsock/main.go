// Command unixsock is a tiny static program run inside busybox containers by
// the tests (busybox's nc has no UNIX sockets); the tests build it with
// CGO_ENABLED=0.
package main

import (
	"fmt"
	"os"
	"strings"

	"golang.org/x/sys/unix"
)

func main() { os.Exit(run(os.Args[1])) }

// helper is a tiny static program run inside busybox containers: busybox's
// nc has no UNIX sockets. "listen:SOCK:FIFO" accepts one connection, tells
// the test it listens by writing to FIFO, and answers "pong:" + the message;
// "send:SOCK:MSG" sends MSG and prints the answer.
func run(arg string) int {
	parts := strings.SplitN(arg, ":", 3)
	fail := func(err error) int { fmt.Fprintln(os.Stderr, "helper:", err); return 1 }
	if len(parts) != 3 {
		return fail(fmt.Errorf("bad arg %q", arg))
	}
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM, 0)
	if err != nil {
		return fail(err)
	}
	addr := &unix.SockaddrUnix{Name: parts[1]}
	switch parts[0] {
	case "listen":
		if err := unix.Bind(fd, addr); err != nil {
			return fail(err)
		}
		if err := unix.Listen(fd, 1); err != nil {
			return fail(err)
		}
		if err := os.WriteFile(parts[2], []byte("ready\n"), 0); err != nil {
			return fail(err)
		}
		c, _, err := unix.Accept(fd)
		if err != nil {
			return fail(err)
		}
		buf := make([]byte, 256)
		n, err := unix.Read(c, buf)
		if err != nil {
			return fail(err)
		}
		fmt.Printf("got %s\n", buf[:n])
		if _, err := unix.Write(c, append([]byte("pong:"), buf[:n]...)); err != nil {
			return fail(err)
		}
		unix.Close(c)
	case "send":
		if err := unix.Connect(fd, addr); err != nil {
			return fail(err)
		}
		if _, err := unix.Write(fd, []byte(parts[2])); err != nil {
			return fail(err)
		}
		buf := make([]byte, 256)
		n, err := unix.Read(fd, buf)
		if err != nil {
			return fail(err)
		}
		fmt.Printf("%s\n", buf[:n])
	default:
		return fail(fmt.Errorf("bad mode %q", parts[0]))
	}
	return 0
}
