//go:build linux

package poller

import "time"

// MeasureBusyForTest makes a Park hub count the time its loop spends
// working (each pass: timers, harvest, dispatch, callbacks) and returns a
// function reading the total so far. The runtime's park and wake around
// each pass are not counted, so busy/elapsed is a lower bound of the hub
// goroutine's CPU share. Block hubs count nothing.
func (h *Hub) MeasureBusyForTest() (func() time.Duration, error) {
	c, err := h.measureBusy()
	if err != nil {
		return nil, err
	}
	return func() time.Duration { return time.Duration(c.Load()) }, nil
}
