package e2e

import (
	"encoding/json"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ctnet/ctnet/internal/sandbox"
)

// BenchmarkDrivers measures the bridge, OVS (userspace datapath here: no
// openvswitch module) and macvlan drivers side by side in one sandbox kind:
//
//	go test -run '^$' -bench Drivers -benchtime 1x ./e2e
//
// Throughput: iperf3, one TCP stream, 3 s, median of 3: container →
// container on the network, and container → the upstream namespace (NATed
// by the host on bridge and OVS; on macvlan the upstream is the containers'
// neighbour on the segment and their router). Attach: `network connect` of a
// fresh namespace (the whole process), median of 5, with 0 and then 100
// other endpoints on the network.
func BenchmarkDrivers(b *testing.B) {
	if _, err := os.Stat("/usr/bin/iperf3"); err != nil {
		b.Skip("needs iperf3")
	}
	for _, d := range []struct {
		name   string
		create []string
		up     string // the upstream's address the containers reach
	}{
		{"bridge", []string{"--subnet", "10.90.0.0/16"}, sandbox.UpstreamAddr},
		{"ovs", []string{"-d", "ovs", "--subnet", "10.90.0.0/16"}, sandbox.UpstreamAddr},
		{"macvlan", []string{"-d", "macvlan", "-o", "parent=eth0", "--subnet", "10.90.0.0/16", "--gateway", "10.90.0.1"}, "10.90.0.1"},
	} {
		b.Run(d.name, func(b *testing.B) {
			e := newOVSEnv(b)
			e.Upstream.MustRun("ip", "addr", "add", "10.90.0.1/16", "dev", "eth0")
			e.must(append(append([]string{"network", "create"}, d.create...), "n")...)
			a, c := e.Netns(), e.Netns()
			e.must("network", "connect", "n", "--netns", a.NetPath())
			peer, _, _ := strings.Cut(strings.Fields(e.must("network", "connect", "n", "--netns", c.NetPath()))[1], "/")

			for _, srv := range []*sandbox.NS{c, e.Upstream} {
				cmd := srv.Command("iperf3", "-s", "-p", "5201")
				if err := cmd.Start(); err != nil {
					b.Fatal(err)
				}
				b.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
			}
			var cc, out []float64
			for range 3 {
				cc = append(cc, iperf3(b, a, peer))
				out = append(out, iperf3(b, a, d.up))
			}
			b.ReportMetric(median(cc), "ctr-ctr-Gbit/s")
			b.ReportMetric(median(out), "ctr-out-Gbit/s")

			connect := func() float64 {
				ns := e.Netns()
				start := time.Now()
				e.must("network", "connect", "n", "--netns", ns.NetPath())
				ms := float64(time.Since(start).Microseconds()) / 1000
				e.must("network", "disconnect", "n", "--netns", ns.NetPath())
				ns.Kill()
				return ms
			}
			var at0, at100 []float64
			for range 5 {
				at0 = append(at0, connect())
			}
			for range 100 - 2 {
				e.must("network", "connect", "n", "--netns", e.Netns().NetPath())
			}
			for range 5 {
				at100 = append(at100, connect())
			}
			b.ReportMetric(median(at0), "attach-at-0-ms")
			b.ReportMetric(median(at100), "attach-at-100-ms")
			b.ReportMetric(slices.Max(at100), "attach-at-100-max-ms")
		})
	}
}

// iperf3 runs one 3 s TCP stream from ns to addr:5201 and returns Gbit/s
// received.
func iperf3(b *testing.B, ns *sandbox.NS, addr string) float64 {
	var out string
	for range 10 { // the server starts, or is busy with the previous client, for a moment
		out, _ = ns.Run("iperf3", "-c", addr, "-p", "5201", "-t", "3", "-J")
		var r struct {
			Error string
			End   struct {
				SumReceived struct {
					BitsPerSecond float64 `json:"bits_per_second"`
				} `json:"sum_received"`
			}
		}
		if err := json.Unmarshal([]byte(out), &r); err == nil && r.Error == "" && r.End.SumReceived.BitsPerSecond > 0 {
			return r.End.SumReceived.BitsPerSecond / 1e9
		}
		time.Sleep(300 * time.Millisecond)
	}
	b.Fatalf("iperf3 -c %s:\n%s", addr, out)
	return 0
}
