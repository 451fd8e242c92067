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
	// for a few samples.
	var m map[string]float64
	deadline := time.Now().Add(10 * time.Second)
	for {
		m = scrape(t, d.metricsAddr)
		if m["grpc_tcp_min_rtt_seconds_count"] >= 4 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no TCP_INFO samples after 10 s: %v", m)
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
