//go:build !linux

package transport

// tstamper is empty where hub sockets are unsupported.
type tstamper struct{}

func (fd *netFD) enableTimestamps(int, WriteLatencyObserver) error { return errUnsupported }
func (fd *netFD) timestampStats() WriteTimestampStats              { return WriteTimestampStats{} }
