package main

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"runtime/pprof"
	"runtime/trace"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// job is one measurement: one server, in a fresh child process.
type job struct {
	Server     string        `json:"server"`
	Conns      int           `json:"conns"`
	Payload    int           `json:"payload"`
	Warmup     time.Duration `json:"warmup"`
	Duration   time.Duration `json:"duration"`
	GOMAXPROCS int           `json:"gomaxprocs,omitempty"`  // 0: the runtime's default
	CPUProfile string        `json:"cpu_profile,omitempty"` // write a CPU profile of the measured window here
	Trace      string        `json:"trace,omitempty"`       // write an execution trace of the measured window here
}

// result is what one job measured over its measured window.
type result struct {
	RoundTrips uint64        `json:"round_trips"`
	Elapsed    time.Duration `json:"elapsed"`
	CPU        time.Duration `json:"cpu"`    // user + system time of the process (getrusage)
	CtxSw      int64         `json:"ctx_sw"` // voluntary + involuntary context switches of the process
	GOMAXPROCS int           `json:"gomaxprocs"`
	Error      string        `json:"error,omitempty"`
}

// perSec is round trips per second.
func (r result) perSec() float64 { return float64(r.RoundTrips) / r.Elapsed.Seconds() }

// cpuPerRT is the process's CPU time per round trip, in µs.
func (r result) cpuPerRT() float64 {
	return float64(r.CPU.Microseconds()) / float64(r.RoundTrips)
}

// ctxPerRT is the process's context switches per round trip.
func (r result) ctxPerRT() float64 { return float64(r.CtxSw) / float64(r.RoundTrips) }

// counter is one client's count of completed round trips, on a cache line
// of its own (each client writes its own, the measuring goroutine reads
// them all).
type counter struct {
	n atomic.Uint64
	_ [56]byte
}

// pingPong is the client, the same for every server: it writes a message
// of len(out) bytes, reads the echo in full and checks that it is the
// message, byte for byte, until stop is set. Each message carries the
// conn's id and a sequence number, so an echo of an earlier message or of
// another conn's is caught.
func pingPong(c net.Conn, id int, payload int, stop *atomic.Bool, cnt *counter) error {
	out := make([]byte, payload)
	in := make([]byte, payload)
	for i := range out {
		out[i] = byte(id*7 + i)
	}
	var n uint64
	for !stop.Load() {
		binary.LittleEndian.PutUint64(out, uint64(id)<<40|n)
		if _, err := c.Write(out); err != nil {
			return err
		}
		if err := readFull(c, in); err != nil {
			return err
		}
		if !bytes.Equal(in, out) {
			return fmt.Errorf("conn %d, round trip %d: %w", id, n, errMismatch)
		}
		n++
		cnt.n.Store(n)
	}
	return nil
}

// sample is the process's state at one instant.
type sample struct {
	at    time.Time
	rts   uint64
	cpu   time.Duration
	ctxsw int64
}

// take samples the clients' counters and the process's rusage.
func take(cnts []counter) (sample, error) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return sample{}, err
	}
	s := sample{
		at:    time.Now(),
		cpu:   time.Duration(ru.Utime.Nano() + ru.Stime.Nano()),
		ctxsw: ru.Nvcsw + ru.Nivcsw,
	}
	for i := range cnts {
		s.rts += cnts[i].n.Load()
	}
	return s, nil
}

// measure runs j in this process: it starts the server, dials j.Conns
// conns, runs a pingPong client on each for j.Warmup + j.Duration, and
// returns the round trips, time and CPU of the measured window (the
// Duration after the Warmup). It closes everything it started before it
// returns.
func measure(j job) (res result, err error) {
	if j.GOMAXPROCS > 0 {
		defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(j.GOMAXPROCS))
	}
	if j.Payload < 8 {
		return res, fmt.Errorf("payload %d: at least 8 bytes (the message carries a sequence number)", j.Payload)
	}
	res.GOMAXPROCS = runtime.GOMAXPROCS(0)
	srv, err := startServer(j.Server)
	if err != nil {
		return res, err
	}
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
		err = errors.Join(err, srv.close())
	}()
	for range j.Conns {
		c, err := srv.dial()
		if err != nil {
			return res, fmt.Errorf("dial %s: %v", srv.addr, err)
		}
		conns = append(conns, c)
	}

	var stop atomic.Bool
	cnts := make([]counter, len(conns))
	errs := make([]error, len(conns))
	var wg sync.WaitGroup
	for i, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = pingPong(c, i, j.Payload, &stop, &cnts[i])
		}()
	}
	// Stop the clients however this returns; each ends after its round
	// trip in flight.
	stopped := false
	stopClients := func() error {
		if stopped {
			return nil
		}
		stopped = true
		stop.Store(true)
		wg.Wait()
		return errors.Join(errs...)
	}
	defer func() { err = errors.Join(err, stopClients()) }()

	time.Sleep(j.Warmup) // the unmeasured warm-up: a wait, not synchronisation
	stopProfiles, err := startProfiles(j)
	if err != nil {
		return res, err
	}
	s0, err := take(cnts)
	if err != nil {
		stopProfiles()
		return res, err
	}
	time.Sleep(j.Duration) // the measured window
	s1, err := take(cnts)
	stopProfiles()
	if err != nil {
		return res, err
	}
	if err := stopClients(); err != nil {
		return res, err
	}
	res.RoundTrips = s1.rts - s0.rts
	res.Elapsed = s1.at.Sub(s0.at)
	res.CPU = s1.cpu - s0.cpu
	res.CtxSw = s1.ctxsw - s0.ctxsw
	if res.RoundTrips == 0 {
		return res, errors.New("no round trip completed in the measured window")
	}
	return res, nil
}

// startProfiles starts the CPU profile and the execution trace that j asks
// for; the returned function stops them.
func startProfiles(j job) (stop func(), err error) {
	var files []*os.File
	stop = func() {
		if j.CPUProfile != "" {
			pprof.StopCPUProfile()
		}
		if j.Trace != "" {
			trace.Stop()
		}
		for _, f := range files {
			f.Close()
		}
	}
	if j.CPUProfile != "" {
		f, err := os.Create(j.CPUProfile)
		if err != nil {
			return nil, err
		}
		files = append(files, f)
		if err := pprof.StartCPUProfile(f); err != nil {
			f.Close()
			return nil, err
		}
	}
	if j.Trace != "" {
		f, err := os.Create(j.Trace)
		if err == nil {
			files = append(files, f)
			err = trace.Start(f)
		}
		if err != nil {
			if j.CPUProfile != "" {
				pprof.StopCPUProfile()
			}
			for _, f := range files {
				f.Close()
			}
			return nil, err
		}
	}
	return stop, nil
}
