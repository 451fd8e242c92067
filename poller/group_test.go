//go:build linux

package poller_test

import (
	"errors"
	"fmt"
	"net"
	"os"
	"reflect"
	"runtime"
	"runtime/pprof"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hubio/hubio/internal/hubtest"
	"github.com/hubio/hubio/poller"
)

// newGroup starts a group of n hubs, closed at cleanup.
func newGroup(t testing.TB, n int, opts ...poller.GroupOption) *poller.Group {
	t.Helper()
	g, err := poller.NewGroup(n, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Close() })
	return g
}

// registerOnNext registers the read end of a new pipe on g.Next().
func registerOnNext(t testing.TB, g *poller.Group) *poller.Registration {
	t.Helper()
	r, _ := pipe(t)
	reg, err := g.Next().Register(r)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(reg.Deregister)
	return reg
}

// registeredPerHub returns each hub's Registered count.
func registeredPerHub(g *poller.Group) []int64 {
	var n []int64
	for _, s := range g.Stats().Hubs {
		n = append(n, s.Registered)
	}
	return n
}

// roundTrip checks that a readiness on h still reaches its waiter.
func roundTrip(t *testing.T, h *poller.Hub) {
	t.Helper()
	r, w := pipe(t)
	reg, err := h.Register(r)
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Deregister()
	got := make(chan error, 1)
	go func() { got <- reg.Wait(poller.Read) }()
	unix.Write(w, []byte{1})
	if err := within(t, 5*time.Second, got, "a readiness on a live hub"); err != nil {
		t.Fatal(err)
	}
}

func TestGroupSpreadsConnsEvenlyUnderEitherBalance(t *testing.T) {
	for _, b := range []poller.Balance{poller.LeastRegistered, poller.RoundRobin} {
		t.Run(b.String(), func(t *testing.T) {
			g := newGroup(t, 3, poller.WithBalance(b))
			for range 30 {
				registerOnNext(t, g)
			}
			if got := registeredPerHub(g); fmt.Sprint(got) != "[10 10 10]" {
				t.Fatalf("registered per hub %v, want [10 10 10]", got)
			}
			if tot := g.Stats().Total.Registered; tot != 30 {
				t.Fatalf("total registered %d, want 30", tot)
			}
		})
	}
}

func TestGroupLeastRegisteredFillsTheEmptiestHubFirst(t *testing.T) {
	g := newGroup(t, 2)
	busy := g.Hubs()[0]
	for range 5 {
		r, _ := pipe(t)
		reg, err := busy.Register(r)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(reg.Deregister)
	}
	for i := range 5 {
		if h := g.Next(); h == busy {
			t.Fatalf("pick %d went to the hub with more fds (%v)", i, registeredPerHub(g))
		}
		registerOnNext(t, g)
	}
	if got := registeredPerHub(g); fmt.Sprint(got) != "[5 5]" {
		t.Fatalf("registered per hub %v, want [5 5]", got)
	}
}

func TestGroupRoundRobinIgnoresLoad(t *testing.T) {
	g := newGroup(t, 2, poller.WithBalance(poller.RoundRobin))
	hubs := g.Hubs()
	for range 3 {
		r, _ := pipe(t)
		reg, err := hubs[0].Register(r)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(reg.Deregister)
	}
	seen := map[*poller.Hub]int{}
	for range 4 {
		seen[g.Next()]++
	}
	if seen[hubs[0]] != 2 || seen[hubs[1]] != 2 {
		t.Fatalf("round robin picked hub 0 %d times and hub 1 %d times, want 2 and 2", seen[hubs[0]], seen[hubs[1]])
	}
}

func TestGroupSkipsAClosedHubWhileTheOthersServe(t *testing.T) {
	for _, b := range []poller.Balance{poller.LeastRegistered, poller.RoundRobin} {
		t.Run(b.String(), func(t *testing.T) {
			g := newGroup(t, 3, poller.WithBalance(b))
			hubs := g.Hubs()
			_, waitDead := parkedReader(t, hubs[1])
			live := registerOnNext(t, g)
			if err := hubs[1].Close(); err != nil {
				t.Fatal(err)
			}
			if err := within(t, 5*time.Second, waitDead, "the waiter on the closed hub"); !errors.Is(err, net.ErrClosed) {
				t.Fatalf("waiter on the closed hub: %v, want net.ErrClosed", err)
			}
			for i := range 12 {
				if h := g.Next(); h == hubs[1] {
					t.Fatalf("pick %d went to the closed hub", i)
				}
			}
			if err := g.Err(); err != nil {
				t.Fatalf("group Err with two live hubs: %v", err)
			}
			// Existing registrations on live hubs and new conns keep working.
			if live.Hub() != hubs[1] {
				if err := live.Prepare(poller.Read); err != nil {
					t.Fatalf("a registration on a live hub: %v", err)
				}
			}
			roundTrip(t, hubs[0])
			roundTrip(t, hubs[2])
			roundTrip(t, g.Next())
		})
	}
}

func TestGroupWithEveryHubClosedPicksAClosedHub(t *testing.T) {
	g := newGroup(t, 2)
	for _, h := range g.Hubs() {
		h.Close()
	}
	if err := g.Err(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Err of a group with no live hub: %v, want net.ErrClosed", err)
	}
	r, _ := pipe(t)
	if _, err := g.Next().Register(r); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Register on the pick of a dead group: %v, want net.ErrClosed", err)
	}
	if err := g.Close(); err != nil {
		t.Fatalf("Close of a group whose hubs closed on their own: %v", err)
	}
}

// openFds counts the process's open fds.
func openFds(t testing.TB) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip("no /proc/self/fd:", err)
	}
	return len(ents)
}

func TestGroupCloseStopsEveryHubAndReturnsItsFds(t *testing.T) {
	before := openFds(t)
	g, err := poller.NewGroup(4)
	if err != nil {
		t.Fatal(err)
	}
	if openFds(t) <= before {
		t.Fatal("a group of 4 hubs opened no fds")
	}
	hubs := g.Hubs()
	var waits []<-chan error
	for _, h := range hubs {
		_, got := parkedReader(t, h)
		waits = append(waits, got)
	}
	pipes := openFds(t)
	hubs[2].Close() // one hub closed on its own first is allowed
	if err := g.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	for i, h := range hubs {
		within(t, 5*time.Second, h.Done(), fmt.Sprintf("hub %d's goroutine exits", i))
		if err := h.Err(); !errors.Is(err, net.ErrClosed) {
			t.Fatalf("hub %d Err after group Close: %v", i, err)
		}
		if err := within(t, 5*time.Second, waits[i], "a waiter"); !errors.Is(err, net.ErrClosed) {
			t.Fatalf("waiter on hub %d: %v, want net.ErrClosed", i, err)
		}
	}
	// The pipes are the test's (closed at cleanup); the hubs' own fds are
	// gone: 4 hubs × (epoll fd + eventfd).
	if got := openFds(t); got != pipes-8 {
		t.Fatalf("open fds after Close: %d, want %d (8 fewer than with the hubs)", got, pipes-8)
	}
	if err := g.Close(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("second Close: %v, want an error matching net.ErrClosed", err)
	}
}

func TestGroupCloseFromACallbackOfItsOwnHub(t *testing.T) {
	g, err := poller.NewGroup(2)
	if err != nil {
		t.Fatal(err)
	}
	hubs := g.Hubs()
	closed := make(chan error, 1)
	if err := hubs[0].Schedule(func() { closed <- g.Close() }); err != nil {
		t.Fatal(err)
	}
	if err := within(t, 5*time.Second, closed, "Close from a callback"); err != nil {
		t.Fatal(err)
	}
	for i, h := range hubs {
		within(t, 5*time.Second, h.Done(), fmt.Sprintf("hub %d's goroutine exits", i))
	}
}

// TestGroupCloseWaitsForAHubClosingFromItsCallback: a hub whose own Close
// was called from its callback, which is still running, stops only when the
// callback returns; Group.Close, called from another goroutine meanwhile,
// returns only after that, as its doc promises (all the hubs' goroutines
// have exited).
func TestGroupCloseWaitsForAHubClosingFromItsCallback(t *testing.T) {
	g, err := poller.NewGroup(2)
	if err != nil {
		t.Fatal(err)
	}
	hubs := g.Hubs()
	entered, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	free := func() { once.Do(func() { close(release) }) }
	t.Cleanup(func() {
		free()
		<-hubs[0].Done()
	})
	if err := hubs[0].Schedule(func() {
		hubs[0].Close() // from its own callback: returns at once
		close(entered)
		<-release
	}); err != nil {
		t.Fatal(err)
	}
	within(t, 5*time.Second, entered, "the callback closing its hub")
	returned := make(chan error, 1)
	go func() { returned <- g.Close() }()
	// Group.Close has passed hub 0 (closed twice: an error it filters out)
	// once hub 1, closed after it, has stopped.
	within(t, 5*time.Second, hubs[1].Done(), "hub 1 stops")
	select {
	case err := <-returned:
		t.Fatalf("Group.Close returned (%v) while hub 0's callback still ran", err)
	case <-time.After(100 * time.Millisecond):
	}
	free()
	if err := within(t, 5*time.Second, returned, "Group.Close once the callback has returned"); err != nil {
		t.Errorf("Group.Close: %v, want nil", err)
	}
	select {
	case <-hubs[0].Done():
	default:
		t.Error("Group.Close returned before hub 0's goroutine exited")
	}
}

func TestNewGroupRefusesNoHubs(t *testing.T) {
	if _, err := poller.NewGroup(0); err == nil {
		t.Fatal("NewGroup(0) succeeded")
	}
}

// TestNewGroupPassesHubOptionsToEachHub: the Options among NewGroup's
// options configure every hub, beside the group's own WithBalance.
func TestNewGroupPassesHubOptionsToEachHub(t *testing.T) {
	g := newGroup(t, 2, poller.WithWaitDesign(poller.Block), poller.WithBalance(poller.RoundRobin), poller.WithEventBatch(7))
	for i, h := range g.Hubs() {
		if d, batch := h.OptionsForTest(); d != poller.Block || batch != 7 {
			t.Errorf("hub %d: design %v, batch %d; want block, 7", i, d, batch)
		}
	}
	// One fd on hub 0: least-registered would now pick hub 1 twice, round
	// robin picks hub 1 and then hub 0.
	first := registerOnNext(t, g).Hub()
	g.Next()
	if g.Next() != first {
		t.Error("the third pick was not the first hub again: WithBalance(RoundRobin) was not applied")
	}
}

// TestWithBalanceIsNotAHubOption: WithBalance configures a group only, so
// New(WithBalance(...)) must not compile; every Option must still be
// accepted by NewGroup.
func TestWithBalanceIsNotAHubOption(t *testing.T) {
	option := reflect.TypeFor[poller.Option]()
	balance := reflect.TypeOf(poller.WithBalance).Out(0)
	if balance.AssignableTo(option) {
		t.Errorf("WithBalance returns %v, which New accepts as an Option", balance)
	}
	if !option.Implements(reflect.TypeFor[poller.GroupOption]()) {
		t.Error("an Option is not a GroupOption: NewGroup refuses hub options")
	}
}

func TestGroupHubsCarryTheirIndexAsPprofLabel(t *testing.T) {
	g := newGroup(t, 2)
	for i, h := range g.Hubs() {
		if got, ok := h.GroupIndex(); !ok || got != i {
			t.Errorf("hub %d: GroupIndex() = %d, %v; want %d, true", i, got, ok, i)
		}
	}
	h := hubtest.NewHub(t)
	if got, ok := h.GroupIndex(); ok || got != -1 {
		t.Errorf("a hub from New: GroupIndex() = %d, %v; want -1, false", got, ok)
	}
	var b strings.Builder
	if err := pprof.Lookup("goroutine").WriteTo(&b, 1); err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		want := fmt.Sprintf(`labels: {"hubio":"hub", "hubio.hub":"%d"}`, i)
		if !strings.Contains(b.String(), want) {
			t.Fatalf("no goroutine with %s in the goroutine profile:\n%s", want, b.String())
		}
	}
}

// TestGroupCloseReportsAHubThatStoppedOnItsOwn: a hub of the group that
// stopped on its own (Goexit in a callback) is not skipped silently: Close
// returns the error that stopped it, and still closes the other hubs.
func TestGroupCloseReportsAHubThatStoppedOnItsOwn(t *testing.T) {
	g, err := poller.NewGroup(3)
	if err != nil {
		t.Fatal(err)
	}
	hubs := g.Hubs()
	if err := hubs[1].Schedule(runtime.Goexit); err != nil {
		t.Fatal(err)
	}
	within(t, 5*time.Second, hubs[1].Done(), "the hub whose callback called Goexit stops")
	err = g.Close()
	if !errors.Is(err, net.ErrClosed) || !strings.Contains(err.Error(), "Goexit") {
		t.Fatalf("Close: %v, want the stopped hub's error (matching net.ErrClosed, naming Goexit)", err)
	}
	for i, h := range hubs {
		within(t, 5*time.Second, h.Done(), fmt.Sprintf("hub %d's goroutine exits", i))
	}
}

// TestGroupStatsSumConns: GroupStats.Total.Conns is the sum of its hubs'.
func TestGroupStatsSumConns(t *testing.T) {
	g := newGroup(t, 2)
	for i, h := range g.Hubs() {
		for range i + 1 {
			r, _ := pipe(t)
			if _, err := h.Register(r); err != nil {
				t.Fatal(err)
			}
		}
		r, _ := pipe(t)
		if _, err := h.RegisterListener(r); err != nil {
			t.Fatal(err)
		}
	}
	s := g.Stats()
	if s.Hubs[0].Conns != 1 || s.Hubs[1].Conns != 2 || s.Total.Conns != 3 || s.Total.Registered != 5 {
		t.Fatalf("conns per hub %d, %d, total %d (registered %d); want 1, 2, 3 (5)",
			s.Hubs[0].Conns, s.Hubs[1].Conns, s.Total.Conns, s.Total.Registered)
	}
}

// TestGroupLeastRegisteredDoesNotCountListeners: a hub's listening sockets
// are not load, so a group whose listener sits on hub 0 still spreads its
// conns evenly.
func TestGroupLeastRegisteredDoesNotCountListeners(t *testing.T) {
	g := newGroup(t, 2)
	lr, _ := pipe(t)
	lis, err := g.Hubs()[0].RegisterListener(lr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(lis.Deregister)
	for range 6 {
		registerOnNext(t, g)
	}
	s := g.Stats()
	if s.Hubs[0].Conns != 3 || s.Hubs[1].Conns != 3 {
		t.Fatalf("conns per hub %d, %d with a listener on hub 0; want 3, 3", s.Hubs[0].Conns, s.Hubs[1].Conns)
	}
}
