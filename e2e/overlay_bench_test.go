package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// BenchmarkOverlay measures the overlay across three hosts on the test
// underlay (veths through a bridge, MTU 1500), each figure against the bare
// underlay where there is one:
//
//	go test -run '^$' -bench Overlay -benchtime 1x ./e2e
//
// RTT: ping container on h1 → container on h3 vs host → host (median of
// 200 each, interleaved in rounds of 50). Throughput: iperf3, one TCP stream,
// 3 s, 5 runs each interleaved. Reach: from the start of `network connect`
// on h1 to the first echo reply seen by a container on h3 that pings the
// new address every millisecond, and the connect's own time (10 samples).
// The agents run already (each host has an endpoint on the network).
// Drop: from a host's sudden death (its cgroup killed) to the moment the
// other hosts have dropped its entries, for host TTLs of 3 s and 10 s.
func BenchmarkOverlay(b *testing.B) {
	if _, err := os.Stat("/usr/bin/iperf3"); err != nil {
		b.Skip("needs iperf3")
	}
	c := newOvCluster(b, 4, "CTNET_STORE_TIMEOUT=30s")
	// h2 and h4 die in the Drop figure, with TTLs of their own; the
	// figures between hosts are h1's and h3's.
	c.hosts[1].env = append(c.hosts[1].env, "CTNET_HOST_TTL=3s")
	c.hosts[3].env = append(c.hosts[3].env, "CTNET_HOST_TTL=10s")
	h1, h2 := c.hosts[0], c.hosts[2]
	h1.must("network", "create", "-d", "overlay", "--subnet", "10.200.0.0/16", "ov")
	h1.run("ov", "c1")
	ip2 := h2.run("ov", "c2")
	pin := func(h *ovHost, name string) string {
		return filepath.Join(h.s.RunRoot, "netns", strings.TrimSpace(h.must("inspect", "-f", "{{.Id}}", name)))
	}
	pin1, pin2 := pin(h1, "c1"), pin(h2, "c2")
	if err := h1.nsPing(pin1, ip2); err != nil {
		b.Fatal(err)
	}

	b.Run("RTT", func(b *testing.B) {
		var over, under []float64
		for range 4 {
			over = append(over, pings(b, h1, pin1, ip2, 50)...)
			under = append(under, pings(b, h1, "", h2.addr, 50)...)
		}
		mo, mu := median(over), median(under)
		b.ReportMetric(mo, "overlay-µs")
		b.ReportMetric(mu, "underlay-µs")
		b.ReportMetric(mo/mu, "overlay/underlay")
	})

	b.Run("Throughput", func(b *testing.B) {
		srv := h2.s.Host.Command("nsenter", "--net="+pin2, "iperf3", "-s", "-p", "5201")
		bare := h2.s.Host.Command("iperf3", "-s", "-p", "5202", "-B", h2.addr)
		if err := srv.Start(); err != nil {
			b.Fatal(err)
		}
		defer func() { srv.Process.Kill(); srv.Wait() }()
		if err := bare.Start(); err != nil {
			b.Fatal(err)
		}
		defer func() { bare.Process.Kill(); bare.Wait() }()
		time.Sleep(300 * time.Millisecond)
		var over, under []float64
		for range 5 {
			over = append(over, iperf(b, h1, pin1, ip2, "5201"))
			under = append(under, iperf(b, h1, "", h2.addr, "5202"))
		}
		mo, mu := median(over), median(under)
		b.ReportMetric(mo, "overlay-Gbit/s")
		b.ReportMetric(mu, "underlay-Gbit/s")
		b.ReportMetric(mo/mu, "overlay/underlay")
	})

	b.Run("Reach", func(b *testing.B) {
		// A container on h3 pings the address the next attach on h1 gets,
		// every millisecond, retrying ARP every 10 ms (not the kernel's
		// 1 s): what is measured is the store, the agents and the kernel
		// entries, not ARP's back-off.
		var reach, cmd []float64
		ns := h1.s.Netns()
		h2.s.Host.MustRun("nsenter", "--net="+pin2, "sysctl", "-qw", "net.ipv4.neigh.eth0.retrans_time_ms=10")
		for i := range 10 {
			addr := fmt.Sprintf("10.200.1.%d", 10+i)
			pinger := h2.s.Host.Command("nsenter", "--net="+pin2, "ping", "-D", "-n", "-i", "0.001", "-W", "1", addr)
			var out strings.Builder
			pinger.Stdout = &out
			if err := pinger.Start(); err != nil {
				b.Fatal(err)
			}
			time.Sleep(50 * time.Millisecond)
			start := time.Now()
			h1.must("network", "connect", "--ip", addr, "ov", "--netns", ns.NetPath())
			done := time.Now()
			var first time.Time
			for deadline := time.Now().Add(20 * time.Second); first.IsZero() && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
				first = firstReply(out.String())
			}
			pinger.Process.Kill()
			pinger.Wait()
			if first.IsZero() {
				b.Fatalf("%s never answered h3's pings", addr)
			}
			reach = append(reach, float64(first.Sub(start).Microseconds())/1000)
			cmd = append(cmd, float64(done.Sub(start).Microseconds())/1000)
			h1.must("network", "disconnect", "ov", "--netns", ns.NetPath())
		}
		b.ReportMetric(median(reach), "reachable-ms")
		b.ReportMetric(median(cmd), "connect-ms")
		b.ReportMetric(slices.Max(reach), "reachable-max-ms")
	})

	b.Run("Drop", func(b *testing.B) {
		for _, h := range []*ovHost{c.hosts[1], c.hosts[3]} {
			name := "d" + h.name
			h.run("ov", name)
			mac := ""
			for _, ep := range h1.inspect("ov").Containers {
				if ep.Name == name {
					mac = ep.MacAddress
				}
			}
			waitFDB(b, h1, mac, true)
			start := time.Now()
			if err := os.WriteFile(filepath.Join(h.s.Cgroup, "cgroup.kill"), []byte("1"), 0o644); err != nil {
				b.Fatal(err)
			}
			waitFDB(b, h1, mac, false)
			ttl := map[string]string{"h2": "3s", "h4": "10s"}[h.name]
			b.ReportMetric(time.Since(start).Seconds(), "s-to-drop-ttl-"+ttl)
		}
	})
}

var rttRe = regexp.MustCompile(`time=([0-9.]+) ms`)

// pings pings addr n times from the namespace pinned at pin ("" = h's
// host) and returns the round trips in µs.
func pings(b *testing.B, h *ovHost, pin, addr string, n int) []float64 {
	args := []string{"ping", "-n", "-i", "0.01", "-c", strconv.Itoa(n), addr}
	if pin != "" {
		args = append([]string{"nsenter", "--net=" + pin}, args...)
	}
	out, err := h.s.Host.Run(args[0], args[1:]...)
	if err != nil {
		b.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
	var rtts []float64
	for _, m := range rttRe.FindAllStringSubmatch(out, -1) {
		v, _ := strconv.ParseFloat(m[1], 64)
		rtts = append(rtts, v*1000)
	}
	return rtts
}

// iperf runs one 3 s TCP stream to addr:port from the namespace pinned at
// pin ("" = h's host) and returns Gbit/s received.
func iperf(b *testing.B, h *ovHost, pin, addr, port string) float64 {
	args := []string{"iperf3", "-c", addr, "-p", port, "-t", "3", "-J"}
	if pin != "" {
		args = append([]string{"nsenter", "--net=" + pin}, args...)
	}
	var out string
	var err error
	for range 5 { // the server may be busy with the previous client for a moment
		if out, err = h.s.Host.Run(args[0], args[1:]...); err == nil {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if err != nil {
		b.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
	var r struct {
		End struct {
			SumReceived struct {
				BitsPerSecond float64 `json:"bits_per_second"`
			} `json:"sum_received"`
		}
	}
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		b.Fatalf("iperf3 -J: %v\n%s", err, out)
	}
	return r.End.SumReceived.BitsPerSecond / 1e9
}

var replyRe = regexp.MustCompile(`(?m)^\[([0-9]+)\.([0-9]+)\] [0-9]+ bytes from`)

// firstReply is the time of the first echo reply in `ping -D` output.
func firstReply(out string) time.Time {
	m := replyRe.FindStringSubmatch(out)
	if m == nil {
		return time.Time{}
	}
	sec, _ := strconv.ParseInt(m[1], 10, 64)
	frac := (m[2] + "000000000")[:9]
	ns, _ := strconv.ParseInt(frac, 10, 64)
	return time.Unix(sec, ns)
}

// waitFDB waits until h's tunnel knows mac (or no longer does).
func waitFDB(b *testing.B, h *ovHost, mac string, known bool) {
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		out, _ := h.s.Host.Run("bridge", "fdb", "show")
		has := false
		for _, l := range strings.Split(out, "\n") {
			has = has || strings.HasPrefix(l, mac+" ") && strings.Contains(l, " dst ")
		}
		if has == known {
			return
		}
	}
	b.Fatalf("%s: entry of %s present=%v: timed out", h.name, mac, !known)
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
