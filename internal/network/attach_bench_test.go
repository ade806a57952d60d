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
// the firewall), with 0, 100 and 1000 other namespaces already on the
// bridge; BenchmarkDetach measures taking it off again. It
// runs on a locked thread moved into a sandbox's host namespace that is
// never left, so the machine's own namespace is not touched; the thread
// dies with the benchmark.
func BenchmarkAttach(b *testing.B) { benchOnBridge(b, false) }

func BenchmarkDetach(b *testing.B) { benchOnBridge(b, true) }

func benchOnBridge(b *testing.B, detach bool) {
	for _, others := range []int{0, 100, 1000} {
		b.Run(fmt.Sprintf("on-bridge=%d", others), func(b *testing.B) {
			s := sandbox.New(b)
			nss := make([]*sandbox.NS, others+1)
			for i := range nss {
				nss[i] = s.Netns()
			}
			done := make(chan struct{})
			go func() {
				defer close(done)
				benchAttach(b, s, nss, detach)
			}()
			<-done
		})
	}
}

func benchAttach(b *testing.B, s *sandbox.Sandbox, nss []*sandbox.NS, detach bool) {
	e, stop := benchService(b, s)
	defer stop()
	ctx := context.Background()
	for _, ns := range nss[:len(nss)-1] {
		if _, err := e.Attach(ctx, AttachSpec{Network: DefaultNetwork, NetNS: ns.NetPath()}); err != nil {
			b.Fatal(err)
		}
	}
	target := nss[len(nss)-1].NetPath()
	b.ResetTimer()
	// Only one of the two is timed.
	timed := func(on bool, f func() error) {
		if !on {
			b.StopTimer()
		}
		if err := f(); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	for i := 0; i < b.N; i++ {
		timed(!detach, func() error {
			_, err := e.Attach(ctx, AttachSpec{Network: DefaultNetwork, NetNS: target})
			return err
		})
		timed(detach, func() error { return e.DetachNamespace(ctx, DefaultNetwork, target) })
	}
}

// BenchmarkCreateNetwork measures `network create` in-process: subnet
// chosen, bridge, addresses, the firewall's elements, the record made
// durable; the network is removed again untimed.
func BenchmarkCreateNetwork(b *testing.B) {
	s := sandbox.New(b)
	done := make(chan struct{})
	go func() {
		defer close(done)
		benchCreate(b, s)
	}()
	<-done
}

func benchCreate(b *testing.B, s *sandbox.Sandbox) {
	e, stop := benchService(b, s)
	defer stop()
	ctx := context.Background()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := e.CreateNetwork(ctx, NetworkSpec{Name: "bench"}); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		if _, err := e.RemoveNetworks(ctx, "bench"); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
}

// benchService opens a service in the sandbox's host namespace, with its run
// state on tmpfs as /run is. The calling goroutine's thread is locked and
// moved into that namespace for good: it dies with the goroutine.
func benchService(b *testing.B, s *sandbox.Sandbox) (*Service, func()) {
	runtime.LockOSThread() // never unlocked: the thread leaves with its namespace
	host, err := netns.GetFromPath(s.Host.NetPath())
	if err != nil {
		b.Fatal(err)
	}
	defer host.Close()
	if err := netns.Set(host); err != nil {
		b.Fatal(err)
	}
	runDir, err := os.MkdirTemp("/dev/shm", "ctnet-bench-")
	if err != nil {
		b.Fatal(err)
	}
	e, err := Open(Config{Root: filepath.Join(s.Dir, "bench-root"), RunRoot: runDir, Cgroup: s.Cgroup})
	if err != nil {
		os.RemoveAll(runDir)
		b.Fatal(err)
	}
	return e, func() { e.Close(); os.RemoveAll(runDir) }
}
