//go:build !hubio_chanpark

package poller_test

// chanparkTag reports whether this test binary was built with the
// hubio_chanpark tag (park_chan.go on every architecture).
const chanparkTag = false
