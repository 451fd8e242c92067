package main

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/hubio/hubio/poller"
)

func TestMain(m *testing.M) {
	poller.Default()
	goleak.VerifyTestMain(m, goleak.IgnoreCurrent())
}

// scrape fetches /metrics and sums each series' values by metric name
// (labels dropped).
func scrape(t *testing.T, addr string) map[string]float64 {
	t.Helper()
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 10 * time.Second}
	resp, err := client.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("GET /metrics: %s: %s", resp.Status, b)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name := line[:strings.IndexAny(line, "{ ")]
		v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
		if err != nil {
			t.Fatalf("unparsable sample %q", line)
		}
		out[name] += v
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestScrapeAfterRPCs(t *testing.T) {
	d, err := start("127.0.0.1:0", 20*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	defer d.close()
	const rpcs, size = 50, 1024
	for range rpcs {
		if err := d.call(context.Background(), size); err != nil {
			t.Fatal(err)
		}
	}
	// TCP_INFO is sampled on the hub's timers, 2–22 ms apart here: wait
	// for a few samples. Hand-offs are sampled one in 256 by default, and
	// 50 RPCs make about 200: make more until one has been measured.
	var m map[string]float64
	deadline := time.Now().Add(10 * time.Second)
	for {
		m = scrape(t, d.metricsAddr)
		if m["grpc_tcp_min_rtt_seconds_count"] >= 4 && m["hubio_hub_handoff_latency_seconds_count"] >= 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no TCP_INFO samples or no hand-off sample after 10 s: %v", m)
		}
		if m["hubio_hub_handoff_latency_seconds_count"] < 1 {
			for range rpcs {
				if err := d.call(context.Background(), size); err != nil {
					t.Fatal(err)
				}
			}
			continue
		}
		time.Sleep(20 * time.Millisecond) // polling a condition
	}
	for _, c := range []struct {
		name   string
		lo, hi float64
	}{
		{"grpc_tcp_connections_created_total", 2, 2},
		{"grpc_tcp_connection_count", 2, 2},
		{"grpc_tcp_syscall_writes_total", 2 * rpcs, 1e6},
		{"grpc_tcp_syscall_reads_total", 2 * rpcs, 1e6},
		{"grpc_tcp_write_size_bytes_sum", 2 * rpcs * size, 1e9},
		{"grpc_tcp_read_size_bytes_sum", 2 * rpcs * size, 1e9},
		{"grpc_tcp_packets_sent_total", 1, 1e9},
		{"grpc_tcp_bytes_sent_total", 1, 1e9},
		{"hubio_hub_utilization_ratio", 0, 1},
		{"hubio_hub_registered_fds", 3, 3}, // listener, server conn, client conn
		{"hubio_hub_loop_iterations_total", 1, 1e9},
		{"hubio_hub_handoff_latency_seconds_count", 1, 1e9},
		{"hubio_hub_loop_delay_seconds_count", 1, 1e9},
	} {
		v, ok := m[c.name]
		if !ok {
			t.Errorf("%s missing from /metrics", c.name)
			continue
		}
		if v < c.lo || v > c.hi {
			t.Errorf("%s = %v, want within [%v, %v]", c.name, v, c.lo, c.hi)
		}
	}
	if n := m["grpc_tcp_min_rtt_seconds_count"]; n > 0 {
		if avg := m["grpc_tcp_min_rtt_seconds_sum"] / n; avg <= 0 || avg >= 0.01 {
			t.Errorf("mean loopback min_rtt %v s, want above 0 and below 10 ms", avg)
		}
	}
}

// TestScrapeShowsZeroRetransmitsAndScopeVersion: before any TCP_INFO sample
// (and with no retransmit on loopback), the retransmit counters are on
// /metrics at 0, so rate() and increase() work from the first scrape; and
// every hubio series names its scope with a version.
func TestScrapeShowsZeroRetransmitsAndScopeVersion(t *testing.T) {
	d, err := start("127.0.0.1:0", time.Hour) // no TCP_INFO sample during the test
	if err != nil {
		t.Fatal(err)
	}
	defer d.close()
	if err := d.call(context.Background(), 10); err != nil {
		t.Fatal(err)
	}
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 10 * time.Second}
	resp, err := client.Get("http://" + d.metricsAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	series := map[string][]string{} // name → sample lines
	for _, line := range strings.Split(string(body), "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name := line[:strings.IndexAny(line, "{ ")]
		series[name] = append(series[name], line)
	}
	for _, name := range []string{"grpc_tcp_packets_retransmitted_total", "grpc_tcp_bytes_retransmitted_total",
		"grpc_tcp_packets_spurious_retransmitted_total", "grpc_tcp_recurring_retransmits_total"} {
		lines := series[name]
		if len(lines) == 0 {
			t.Errorf("%s missing from /metrics before any retransmit", name)
			continue
		}
		for _, l := range lines {
			if !strings.HasSuffix(l, " 0") {
				t.Errorf("%s: %q, want 0 on loopback with no TCP_INFO sample taken", name, l)
			}
		}
	}
	for _, name := range []string{"grpc_tcp_connections_created_total", "hubio_hub_busy_time_seconds_total", "grpc_tcp_packets_retransmitted_total"} {
		for _, l := range series[name] {
			if !strings.Contains(l, `otel_scope_name="github.com/hubio/hubio/telemetry"`) ||
				strings.Contains(l, `otel_scope_version=""`) || !strings.Contains(l, `otel_scope_version="`) {
				t.Errorf("%s: %q, want otel_scope_name github.com/hubio/hubio/telemetry and a non-empty otel_scope_version", name, l)
			}
		}
		if len(series[name]) == 0 {
			t.Errorf("%s missing from /metrics", name)
		}
	}
}
