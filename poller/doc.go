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
// The poll fd is itself registered with the Go runtime poller. The hub
// goroutine keeps one syscall.RawConn.Read call open on it; each pass polls
// with a zero timeout before letting the runtime park the goroutine, so no
// edge is lost to the ready flag that Read clears when it starts. The next
// timer is the file's read deadline. No OS thread is held while the hub is
// idle. Blocking in epoll_wait instead, a switch for benchmarks only, is
// several times slower to wake; docs/poller.md has the figures.
//
// A readiness event reaches its waiter in two steps: the runtime poller
// wakes the hub goroutine, and the hub makes the waiter runnable with a
// channel send. That send goes through the runtime's ready(), which also
// wakes an idle processor's OS thread when there is one (wakep); package
// net's poller runs the reader on the thread that polled instead. With one
// conn busy at a time that wake is most of the hub's extra cost; with many,
// one poll harvests a batch of events and the wake is shared
// (docs/poller.md, and the README's micro-benchmark section).
//
// # Counters
//
// Stats answers "how many conns does this hub hold" with Conns: fds given
// to Register, not the listening sockets given to RegisterListener (as
// package transport registers its listeners), which Registered counts too.
// Events counts readiness events handed to waiters, not requests: a conn
// that many callers share carries several RPCs per event.
//
// # Files
//
// hub.go holds the hub's lifecycle (New, Default, Close, Done, Err) and
// Stats; options.go the options of New and NewGroup; callbacks.go
// Schedule's queue and how the hub runs users' callbacks, locked to a
// thread whose id (thread_linux.go) lets Close tell it is called from one.
// loop.go is the loop every platform shares and states what a platform's
// poll set must provide; epoll_linux.go is that poll set on Linux, and
// unsupported.go elsewhere. registration.go is the per-fd half (Register,
// Prepare, Wait, deadlines); park.go the hand-off word through which the
// hub wakes a waiter, and the waiter's park in one of two builds:
// park_runtime.go (amd64: the runtime's own park and ready, with the
// compare-and-swap of park_runtime_amd64.s) or park_chan.go (elsewhere,
// or with the hubio_chanpark build tag: a token channel); errqueue.go the EPOLLERR
// handler a registration may set; timer.go the timer heap and AfterFunc;
// group.go the Group of hubs and its Balance; observer.go the Observer
// hooks and the loop-time accounting; loopdelay.go Hub.LoopDelay (the
// latest measurement, observer or not) and Registration.Wake. dropwake_on.go and dropwake_off.go
// switch on and off the deliberately lost wakeup of hubio_dropwakeup
// builds, with which a soak shows that it notices one. filemap_test.go
// fails when a file is added, removed or renamed without this map.
//
// # Failures
//
// A hub stops on its own, with an error matching net.ErrClosed that says
// why (see Err), when its poll set fails persistently (epoll_wait returns
// an error other than EINTR) or when a callback ends the hub goroutine with
// runtime.Goexit. Its waiters and callers then get that error, as they get
// ErrClosed after Close. A callback that panics crashes the program.
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
