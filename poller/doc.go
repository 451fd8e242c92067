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
// # What a wake costs
//
// A readiness event reaches its waiter in two steps: the runtime poller
// wakes the hub goroutine, and the hub makes the waiter runnable with a
// channel send. That send goes through the runtime's ready(), which also
// wakes an idle processor's OS thread when there is one (wakep); package
// net's poller runs the reader on the thread that polled instead. With one
// conn busy at a time (a single ping-pong pair) that wake is most of the
// hub's extra cost; with many, one poll harvests a batch of events and the
// wake is shared. The README's micro-benchmark section has the figures, and
// bench/nowakep.sh measures the runtime's share with a patched toolchain.
//
// The hub goroutine carries the pprof label hubio=hub, so a CPU profile of
// any program shows how busy its hubs are: go tool pprof -tags prints their
// CPU time, which, divided by the profile's duration and the number of
// hubs, nears 1 when a hub saturates.
//
// # Platforms
//
// Hubs need epoll: on other platforms New returns an error matching
// errors.ErrUnsupported, and Default returns a hub whose operations fail
// with that error.
package poller
