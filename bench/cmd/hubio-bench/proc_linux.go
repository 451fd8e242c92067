package main

import (
	"bytes"
	"syscall"
	"time"
)

// procStatus is what the benchmark reads from /proc/self/status.
type procStatus struct {
	rss     int64 // VmRSS, bytes
	threads int   // Threads: OS threads of the process
}

// statusBuf is scratch space for readProcStatus; /proc/self/status is
// about 1.5 KiB.
type statusBuf [8 << 10]byte

// readProcStatus reads /proc/self/status into buf and parses it. It makes
// raw syscalls and does not allocate, so sampling it does not disturb the
// allocation counts being measured.
func readProcStatus(buf *statusBuf) (procStatus, error) {
	fd, err := syscall.Open("/proc/self/status", syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return procStatus{}, err
	}
	defer syscall.Close(fd)
	n := 0
	for n < len(buf) {
		m, err := syscall.Read(fd, buf[n:])
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return procStatus{}, err
		}
		if m == 0 {
			break
		}
		n += m
	}
	b := buf[:n]
	return procStatus{
		rss:     statusField(b, "\nVmRSS:") << 10, // reported in kB
		threads: int(statusField(b, "\nThreads:")),
	}, nil
}

// statusField returns the number after key in a /proc status file, 0 if
// there is none.
func statusField(b []byte, key string) int64 {
	i := bytes.Index(b, []byte(key))
	if i < 0 {
		return 0
	}
	b = b[i+len(key):]
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	var v int64
	for len(b) > 0 && '0' <= b[0] && b[0] <= '9' {
		v = v*10 + int64(b[0]-'0')
		b = b[1:]
	}
	return v
}

// cpuTime returns the user plus system CPU time the process has used, all
// threads together (getrusage RUSAGE_SELF).
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
