//go:build linux

package transport

import (
	"net"
	"os"
	"syscall"
)

// unwrapOpError returns the error inside package net's *net.OpError, which
// the caller wraps in its own: an OpError never wraps another.
func unwrapOpError(err error) error {
	if oe, ok := err.(*net.OpError); ok {
		return oe.Err
	}
	return err
}

// dupFD duplicates the fd of a standard library socket (close-on-exec,
// non-blocking), so that the original can be closed independently.
func dupFD(sc syscall.Conn) (int, error) {
	rc, err := sc.SyscallConn()
	if err != nil {
		return -1, unwrapOpError(err)
	}
	ns := -1
	var derr error
	if err := rc.Control(func(fd uintptr) {
		ns, derr = dupCloexec(int(fd))
	}); err != nil {
		return -1, unwrapOpError(err)
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
