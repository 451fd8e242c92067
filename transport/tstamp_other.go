//go:build !linux

package transport

func (fd *netFD) enableTimestamps(int, WriteLatencyObserver) error { return errUnsupported }
func (fd *netFD) timestampStats() WriteTimestampStats              { return WriteTimestampStats{} }
