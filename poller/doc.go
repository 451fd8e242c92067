// Package poller is the hub: one event-loop goroutine that owns an
// edge-triggered epoll set, a wakeup eventfd, a timer heap and a queue of
// callbacks, and tells goroutines waiting on registered fds when their fd is
// ready.
//
// # Model
//
// The hub goroutine alone calls epoll_wait, reads the wakeup fd, runs
// Schedule callbacks (in FIFO order) and AfterFunc timers. Everything else
// talks to it through the registration table, Schedule and the eventfd: a
// goroutine that wants readiness registers its fd (Register), does its own
// non-blocking syscall, and on EAGAIN parks in Registration.Wait until the
// hub delivers an event, a deadline passes or the fd or hub closes.
//
// Every registration carries a generation, stored in the epoll event beside
// the fd number, so an event harvested for an fd that has since been
// deregistered, closed and reused is dropped instead of waking the new
// owner.
//
// # How the hub waits
//
// Two designs are implemented and measured (WithWaitDesign):
//
//   - Park (default): the epoll fd is itself registered with the Go runtime
//     poller. The hub goroutine keeps one syscall.RawConn.Read call open on
//     it; each pass polls epoll with a zero timeout before letting the
//     runtime park the goroutine, so no edge is lost to the ready flag that
//     Read clears when it starts. The next timer is the file's read
//     deadline. No OS thread is held while the hub is idle.
//   - Block: the hub goroutine blocks in epoll_wait with a millisecond
//     timeout for the next timer, holding an OS thread until the runtime
//     hands its P to another.
//
// Measured with go test -bench . ./poller (2 cores, Go 1.26, Linux; ns/op,
// three runs each, zero allocations in every case):
//
//	                                     Park       Block
//	Schedule round trip                  3.3–3.4 µs  30–32 µs
//	pipe readiness round trip (2 wakes)  7.7–8.1 µs  29–39 µs
//
// Park is kept: waking a goroutine parked in the runtime poller costs a
// goroutine switch, while waking a thread blocked in epoll_wait costs a
// futex wake and a P hand-off (see golang/go#76290).
//
// # Platforms
//
// Hubs need epoll: on other platforms New returns an error matching
// errors.ErrUnsupported, and Default returns a hub whose operations fail
// with that error.
package poller
