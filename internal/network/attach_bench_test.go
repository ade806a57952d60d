package network

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/vishvananda/netns"

	"github.com/ctnet/ctnet/internal/sandbox"
)

// BenchmarkAttach measures the service's hot path in-process: attach a
// namespace to the default network (store transactions, address
// allocation, veth born in place, addresses and routes, the port bound in
// the firewall), with 0 and 100 other namespaces already on the bridge. It
// runs on a locked thread moved into a sandbox's host namespace that is
// never left, so the machine's own namespace is not touched; the thread
// dies with the benchmark.
func BenchmarkAttach(b *testing.B) {
	for _, others := range []int{0, 100} {
		b.Run(fmt.Sprintf("on-bridge=%d", others), func(b *testing.B) {
			s := sandbox.New(b)
			nss := make([]*sandbox.NS, others+1)
			for i := range nss {
				nss[i] = s.Netns()
			}
			done := make(chan struct{})
			go func() {
				defer close(done)
				benchAttach(b, s, nss)
			}()
			<-done
		})
	}
}

func benchAttach(b *testing.B, s *sandbox.Sandbox, nss []*sandbox.NS) {
	runtime.LockOSThread() // never unlocked: the thread leaves with its namespace
	host, err := netns.GetFromPath(s.Host.NetPath())
	if err != nil {
		b.Fatal(err)
	}
	defer host.Close()
	if err := netns.Set(host); err != nil {
		b.Fatal(err)
	}
	runDir, err := os.MkdirTemp("/dev/shm", "ctnet-bench-") // tmpfs, as /run
	if err != nil {
		b.Fatal(err)
	}
	defer os.RemoveAll(runDir)
	e, err := Open(Config{Root: filepath.Join(s.Dir, "bench-root"), RunRoot: runDir, Cgroup: s.Cgroup})
	if err != nil {
		b.Fatal(err)
	}
	defer e.Close()
	ctx := context.Background()
	for _, ns := range nss[:len(nss)-1] {
		if _, err := e.Attach(ctx, AttachSpec{Network: DefaultNetwork, NetNS: ns.NetPath()}); err != nil {
			b.Fatal(err)
		}
	}
	target := nss[len(nss)-1].NetPath()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := e.Attach(ctx, AttachSpec{Network: DefaultNetwork, NetNS: target}); err != nil {
			b.Fatal(err)
		}
		// Detaching a live namespace deletes the veth synchronously, which
		// costs the kernel a grace period (~30 ms); it is not what is measured.
		b.StopTimer()
		if err := e.DetachNamespace(ctx, DefaultNetwork, target); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
}
