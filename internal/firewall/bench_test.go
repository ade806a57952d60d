package firewall

import (
	"fmt"
	"net"
	"testing"
)

func manyPorts(n int) []Port {
	ports := make([]Port, n)
	for i := range ports {
		ports[i] = Port{Proto: "tcp", HostPort: uint16(10000 + i),
			ContainerIP: net.IPv4(10, 88, byte(i>>8), byte(i)), ContainerPort: 80, Bridge: "ctnet0"}
	}
	return ports
}

// Publish of one port must cost the same however many are published.
func BenchmarkPublish(b *testing.B) {
	for _, existing := range []int{0, 100, 1000} {
		b.Run(fmt.Sprintf("existing=%d", existing), func(b *testing.B) {
			sb := newSandbox(b)
			f := sb.firewall(b)
			if _, err := f.Ensure([]Network{netDefault}, nil, manyPorts(existing)); err != nil {
				b.Fatal(err)
			}
			p := []Port{{Proto: "udp", HostPort: 53, ContainerIP: net.ParseIP("10.88.200.1"), ContainerPort: 53}}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if err := f.Publish(p); err != nil {
					b.Fatal(err)
				}
				if err := f.Unpublish(p); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(2*b.N), "ns/change")
		})
	}
}

func manyEndpoints(n int) []Endpoint {
	eps := make([]Endpoint, n)
	for i := range eps {
		eps[i] = Endpoint{Port: fmt.Sprintf("veth%07x", i), Bridge: "ctnet0",
			MAC: net.HardwareAddr{0x02, 0x42, 10, 88, byte(i >> 8), byte(i)},
			IPs: []net.IP{net.IPv4(10, 88, byte(i>>8), byte(i))}}
	}
	return eps
}

// AddEndpoint of one container must cost the same however many there are.
func BenchmarkAddEndpoint(b *testing.B) {
	for _, existing := range []int{0, 100, 1000} {
		b.Run(fmt.Sprintf("existing=%d", existing), func(b *testing.B) {
			sb := newSandbox(b)
			f := sb.firewall(b)
			if _, err := f.Ensure([]Network{netDefault}, manyEndpoints(existing), nil); err != nil {
				b.Fatal(err)
			}
			ep := Endpoint{Port: "vethbench", Bridge: "ctnet0", MAC: net.HardwareAddr{0x02, 0x42, 10, 88, 200, 1},
				IPs: []net.IP{net.ParseIP("10.88.200.1"), net.ParseIP("fd00:88::c8:1")}}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if err := f.AddEndpoint(netDefault, ep); err != nil {
					b.Fatal(err)
				}
				if err := f.DelEndpoint(ep); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(2*b.N), "ns/change")
		})
	}
}

// Ensure on an up-to-date table: what reconcile pays when nothing is wrong.
func BenchmarkEnsureNoop(b *testing.B) {
	for _, n := range []int{0, 100, 1000} {
		b.Run(fmt.Sprintf("ports=%d", n), func(b *testing.B) {
			benchEnsureNoop(b, nil, manyPorts(n))
		})
	}
	b.Run("endpoints=1000", func(b *testing.B) { benchEnsureNoop(b, manyEndpoints(1000), nil) })
}

func benchEnsureNoop(b *testing.B, eps []Endpoint, ports []Port) {
	sb := newSandbox(b)
	f := sb.firewall(b)
	if _, err := f.Ensure([]Network{netDefault}, eps, ports); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := f.Ensure([]Network{netDefault}, eps, ports); err != nil {
			b.Fatal(err)
		}
	}
}

// Ensure after the table was deleted: full rebuild with all elements.
func BenchmarkEnsureRebuild(b *testing.B) {
	for _, n := range []int{0, 1000} {
		b.Run(fmt.Sprintf("ports=%d", n), func(b *testing.B) {
			sb := newSandbox(b)
			f := sb.firewall(b)
			ports := manyPorts(n)
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				if n := i; n > 0 {
					f.mu.Lock()
					c, _ := f.connLocked()
					c.DelTable(inetTable)
					err := c.Flush()
					f.mu.Unlock()
					if err != nil {
						b.Fatal(err)
					}
				}
				b.StartTimer()
				if _, err := f.Ensure([]Network{netDefault}, nil, ports); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
