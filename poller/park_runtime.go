//go:build amd64 && !hubio_chanpark

package poller

import (
	"sync/atomic"
	"unsafe"
)

// ParkDesign names how a waiter parks in this build: "runtime" here (the
// runtime's own park and ready, as its network poller's pollDesc does),
// "channel" where park_chan.go is built (other architectures, or the
// hubio_chanpark build tag).
//
// Why: a parked reader is woken once per message it receives, and a
// channel's receive and non-blocking send (its lock, a sudog, the
// channel's own cache lines) were most of what a hub's hand-off cost
// beyond package net's (docs/performance.md). Here the waiter's goroutine
// is kept in direction.state itself, and the wake that moves the state to
// stReady readies it: atomic operations on one cache line on each side
// (the waker's compare-and-swap; the waiter's compare-and-swap, the
// commit's and the swap that takes the readiness), as netpoll's pollDesc
// does for package net.
//
// How: runtime.gopark and runtime.goready, reached with go:linkname. The
// runtime marks both for such use (go.dev/issue/67401: "Do not remove or
// change the type signature"; gVisor parks this way). gopark's commit
// function runs on the scheduler's system stack, where the race
// detector's atomics cannot run, so its compare-and-swap is a few lines
// of assembly (park_runtime_amd64.s); everything else uses sync/atomic,
// which orders the waker's writes before the waiter's resumption for the
// race detector as for the hardware.
const ParkDesign = "runtime"

// parkSlot needs nothing beyond the state word in the runtime build.
type parkSlot struct{}

func (*parkSlot) init() {}

// park parks the calling goroutine unless a wake has already moved the
// state from stWait: commitPark, run by the scheduler once the goroutine
// is off its stack, stores the goroutine in the state only if it still
// holds stWait, and gopark returns at once if it does not.
func (*parkSlot) park(state *atomic.Uintptr) {
	gopark(commitPark, unsafe.Pointer(state), waitReasonIOWait, traceBlockNet, 1)
}

// resume readies the goroutine that old holds, if it is one: old == stWait
// means the waiter had not parked yet, and its commitPark now fails.
func (*parkSlot) resume(old uintptr) {
	if old > stWait {
		goready(old, 1)
	}
}

// commitPark is gopark's commit function: it runs on the system stack
// after the goroutine gp has stopped running, and reports whether gp stays
// parked. state is the direction's state word.
//
//go:nosplit
//go:norace
func commitPark(gp uintptr, state unsafe.Pointer) bool {
	return casUintptr((*uintptr)(state), stWait, gp)
}

// casUintptr is an atomic compare-and-swap that the race detector does not
// instrument (park_runtime_amd64.s).
//
//go:noescape
func casUintptr(p *uintptr, old, new uintptr) bool

// The runtime's reason codes for a parked goroutine, as its traces and
// goroutine dumps show them ("IO wait", "network"): the values of
// runtime.waitReasonIOWait and runtime.traceBlockNet. They only label the
// park; a runtime that renumbered them would show another label.
const (
	waitReasonIOWait = 2
	traceBlockNet    = 2
)

// gopark parks the calling goroutine; unlockf(gp, lock) runs once gp is
// off its stack and returns false to resume it at once. The declared types
// stand for the runtime's own (*g is passed as a uintptr: a goroutine's g
// never moves or is freed; waitReason and traceBlockReason are uint8).
//
//go:linkname gopark runtime.gopark
func gopark(unlockf func(gp uintptr, lock unsafe.Pointer) bool, lock unsafe.Pointer, reason uint8, traceReason uint8, traceskip int)

// goready makes gp, parked by gopark, runnable (on the calling P's
// runnext, as a channel send does).
//
//go:linkname goready runtime.goready
func goready(gp uintptr, traceskip int)
