//go:build !amd64 || hubio_chanpark

package poller

import "sync/atomic"

// ParkDesign names how a waiter parks in this build: "channel" here (a
// token channel per direction), "runtime" where park_runtime.go is built.
const ParkDesign = "channel"

// parkSlot is a direction's parking place in the channel build: a channel
// of one token, sent by the wake that moves the state from stWait to
// stReady, so at most one token is ever in it, and the waiter that set
// stWait always receives it.
type parkSlot struct{ ch chan struct{} }

func (p *parkSlot) init() { p.ch = make(chan struct{}, 1) }

// park waits for the token of the wake that ends this wait.
func (p *parkSlot) park(*atomic.Uintptr) { <-p.ch }

// resume wakes the waiter that left old (stWait) in the state.
func (p *parkSlot) resume(old uintptr) {
	if old == stWait {
		p.ch <- struct{}{} // never blocks: one token per stWait
	}
}
