//go:build linux

package transport

import (
	"os"
	"syscall"
)

// dupFD duplicates the fd of a standard library socket (close-on-exec,
// non-blocking), so that the original can be closed independently.
func dupFD(sc syscall.Conn) (int, error) {
	rc, err := sc.SyscallConn()
	if err != nil {
		return -1, err
	}
	ns := -1
	var derr error
	if err := rc.Control(func(fd uintptr) {
		ns, derr = dupCloexec(int(fd))
	}); err != nil {
		return -1, err
	}
	if derr != nil {
		return -1, os.NewSyscallError("fcntl", derr)
	}
	// O_NONBLOCK lives in the shared open file description: already set by
	// package net, but make sure.
	if err := syscall.SetNonblock(ns, true); err != nil {
		syscall.Close(ns)
		return -1, os.NewSyscallError("setnonblock", err)
	}
	return ns, nil
}

func dupCloexec(fd int) (int, error) {
	var r uintptr
	err := ignoringEINTR(func() error {
		var e syscall.Errno
		if r, _, e = syscall.Syscall(syscall.SYS_FCNTL, uintptr(fd), syscall.F_DUPFD_CLOEXEC, 0); e != 0 {
			return e
		}
		return nil
	})
	if err != nil {
		return -1, err
	}
	return int(r), nil
}
