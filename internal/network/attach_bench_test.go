package network

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"testing"

	"golang.org/x/sys/unix"
)

// BenchmarkAttach measures the service's hot path in-process: attach a
// namespace to the default network (store transaction, address allocation,
// veth born in place, addresses and routes), with 0 and 100 other
// namespaces already on the bridge. It runs on a locked thread
// moved into a fresh network namespace that is never left, so the machine's
// own namespace is not touched; the thread dies with the benchmark.
func BenchmarkAttach(b *testing.B) {
	for _, others := range []int{0, 100} {
		b.Run(fmt.Sprintf("on-bridge=%d", others), func(b *testing.B) {
			done := make(chan struct{})
			go func() {
				defer close(done)
				benchAttach(b, others)
			}()
			<-done
		})
	}
}

func benchAttach(b *testing.B, others int) {
	if os.Geteuid() != 0 {
		b.Skip("needs root: makes network namespaces")
	}
	runtime.LockOSThread() // never unlocked: the thread leaves with its namespace
	if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
		b.Fatal(err)
	}
	runDir, err := os.MkdirTemp("/dev/shm", "ctnet-bench-") // tmpfs, as /run
	if err != nil {
		b.Fatal(err)
	}
	defer os.RemoveAll(runDir)
	e, err := Open(Config{Root: b.TempDir(), RunRoot: runDir})
	if err != nil {
		b.Fatal(err)
	}
	defer e.Close()
	ctx := context.Background()
	holders := make([]*exec.Cmd, others+1)
	for i := range holders {
		holders[i] = exec.Command("unshare", "--net", "sleep", "3600")
		if err := holders[i].Start(); err != nil {
			b.Fatal(err)
		}
		defer func(c *exec.Cmd) { c.Process.Kill(); c.Wait() }(holders[i])
	}
	path := func(c *exec.Cmd) string { return "/proc/" + strconv.Itoa(c.Process.Pid) + "/ns/net" }
	waitNS := func(c *exec.Cmd) {
		self, _ := os.Readlink("/proc/self/ns/net")
		for {
			if l, err := os.Readlink(path(c)); err == nil && l != self {
				return
			}
			runtime.Gosched()
		}
	}
	for _, h := range holders[:others] {
		waitNS(h)
		if _, err := e.Attach(ctx, AttachSpec{Network: DefaultNetwork, NetNS: path(h)}); err != nil {
			b.Fatal(err)
		}
	}
	target := holders[others]
	waitNS(target)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := e.Attach(ctx, AttachSpec{Network: DefaultNetwork, NetNS: path(target)}); err != nil {
			b.Fatal(err)
		}
		// Detaching a live namespace deletes the veth synchronously, which
		// costs the kernel a grace period (~30 ms); it is not what is measured.
		b.StopTimer()
		if err := e.DetachNamespace(ctx, DefaultNetwork, path(target)); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
}
