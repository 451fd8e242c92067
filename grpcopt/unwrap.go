package grpcopt

import (
	"fmt"
	"net"
	"reflect"
	"runtime"
	"strings"

	"github.com/hubio/hubio/transport"
)

// Bypassable is implemented by a conn wrapper (a limiting listener's conn,
// say) to tell the ServerOption credentials that they may read and write
// the conn beneath it directly: that conn's socket is then moved onto the
// hub, and the wrapper stays only for Close and its addresses.
//
// BypassConn returns the conn beneath the wrapper (which may itself be a
// wrapper: up to 8 are looked through). The credentials call it once, on
// grpc-go's goroutine for the new conn, before any byte is read. By
// implementing it, the wrapper promises that:
//   - its Read and Write are exactly those of the conn BypassConn returns:
//     no byte read ahead, held back, added or changed, and no rate limit;
//   - its deadline setters set that conn's deadlines (grpc-go sets its
//     connection timeout through the wrapper);
//   - its Close closes that conn; the credentials call it once, after the
//     hub conn has closed, so whatever else it does (releasing a slot)
//     still happens. Its LocalAddr and RemoteAddr may be its own: the hub
//     conn reports them.
//
// A wrapper that embeds its conn, defines nothing beyond Close, addresses
// and socket-option setters, and is not generic need not implement it
// (etcd's and netutil.LimitListener's conns): the credentials infer the
// same promise by reflection, which is how wrappers from packages that do
// not know this one are looked through. Bypassable is for the others: a
// generic wrapper, one that forwards to an unexported field, one that
// defines a Read or Write that only calls its conn's. For example:
//
//	func (c *limitConn) BypassConn() net.Conn { return c.Conn }
//
// A wrapper that embeds a field implementing Bypassable may only promote
// that field's BypassConn, a promise about the field and not about the
// wrapper: such a wrapper is judged by reflection (BypassConn counting, as
// Close does, among the methods it may define).
type Bypassable interface {
	net.Conn
	BypassConn() net.Conn
}

// bypassableType is Bypassable's reflect.Type.
var bypassableType = reflect.TypeFor[Bypassable]()

// wrapperMethods are the methods a wrapper may define itself and still be
// judged bypassable by reflection: they act around the socket (releasing a
// slot on Close, setting or reading socket options and addresses, naming
// the conn beneath), never on the byte stream. Every other method of such
// a wrapper — Read, Write, the deadline setters, CloseWrite, ReadFrom,
// anything of its own — must be promoted unchanged from its one embedded
// conn.
var wrapperMethods = map[string]bool{
	"Close":              true,
	"LocalAddr":          true,
	"RemoteAddr":         true,
	"NetConn":            true,
	"BypassConn":         true,
	"SetKeepAlive":       true,
	"SetKeepAlivePeriod": true,
	"SetKeepAliveConfig": true,
	"SetLinger":          true,
	"SetNoDelay":         true,
	"SetReadBuffer":      true,
	"SetWriteBuffer":     true,
}

// maxWrappers bounds how many wrappers socketBeneath looks through.
const maxWrappers = 8

// socketBeneath returns the socket c stands for: c itself if it is a
// *net.TCPConn, *net.UnixConn or hub conn, else the socket beneath a chain
// of bypassable wrappers (limiting listeners' conns, structs embedding
// *net.TCPConn). A wrapper is bypassable when it says so (Bypassable), or
// else when reflection finds it a struct (or pointer to one) with exactly
// one embedded field, an exported one holding a conn, defining no method
// outside wrapperMethods: its Read, Write and deadline setters are then the
// embedded conn's, promoted by the compiler. Reads and writes on the socket
// are exactly what they would be through the wrapper. Anything else (cmux's
// conn, which replays bytes it has read ahead, a rate limiter, *tls.Conn)
// stays in the path: socketBeneath returns nil and why.
func socketBeneath(c net.Conn) (net.Conn, string) {
	for range maxWrappers {
		switch c.(type) {
		case *net.TCPConn, *net.UnixConn, *transport.Conn, *Conn:
			return c, ""
		}
		if inner, ok := declaredBypass(c); ok {
			if isNil(inner) {
				return nil, fmt.Sprintf("%T's BypassConn returns no conn", c)
			}
			c = inner
			continue
		}
		inner, why := embeddedConn(c)
		if inner == nil {
			return nil, why
		}
		c = inner
	}
	return nil, fmt.Sprintf("more than %d wrappers deep", maxWrappers)
}

// declaredBypass returns BypassConn's conn when c's type implements
// Bypassable itself; ok is false when it does not, when c is a nil
// pointer, or when c embeds a field that implements Bypassable: c may then
// only have promoted that field's BypassConn, a promise about the field and
// not about c, whose own Read may differ. Such a c is left to embeddedConn.
func declaredBypass(c net.Conn) (inner net.Conn, ok bool) {
	b, ok := c.(Bypassable)
	if !ok || isNil(c) {
		return nil, false
	}
	t := reflect.TypeOf(c)
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t.Kind() == reflect.Struct {
		for i := range t.NumField() {
			f := t.Field(i)
			if f.Anonymous && (f.Type.Implements(bypassableType) || reflect.PointerTo(f.Type).Implements(bypassableType)) {
				return nil, false
			}
		}
	}
	return b.BypassConn(), true
}

// isNil reports whether c is nil or holds a nil pointer.
func isNil(c net.Conn) bool {
	if c == nil {
		return true
	}
	v := reflect.ValueOf(c)
	return v.Kind() == reflect.Pointer && v.IsNil()
}

// embeddedConn returns the conn a bypassable wrapper embeds, or nil and why
// c is not one. It is the reflection that infers Bypassable's promise from
// two signs of the compiler's output, which TestWrapperHeuristic pins for
// every wrapper kind the docs name: a method the wrapper promotes is
// compiler-made (ownMethod), and a generic type's name holds "[".
func embeddedConn(c net.Conn) (net.Conn, string) {
	v := reflect.ValueOf(c)
	t := v.Type()
	if strings.Contains(t.String(), "[") {
		// A generic type's methods are all compiler-made wrappers around
		// shape-shared code: defined and promoted ones look alike.
		return nil, fmt.Sprintf("%v is a generic type", t)
	}
	sv := v
	if t.Kind() == reflect.Pointer {
		if v.IsNil() {
			return nil, fmt.Sprintf("%v is nil", t)
		}
		sv = v.Elem()
	}
	if sv.Kind() != reflect.Struct {
		return nil, fmt.Sprintf("%v is not a struct", t)
	}
	if m, ok := ownMethod(t); ok {
		return nil, fmt.Sprintf("%v defines %s", t, m)
	}
	var field reflect.Value
	embedded := 0
	for i := range sv.NumField() {
		if sv.Type().Field(i).Anonymous {
			embedded++
			field = sv.Field(i)
		}
	}
	if embedded != 1 {
		return nil, fmt.Sprintf("%v embeds %d fields (want one conn)", t, embedded)
	}
	if !field.CanInterface() {
		return nil, fmt.Sprintf("%v embeds its conn in an unexported field", t)
	}
	inner, ok := field.Interface().(net.Conn)
	if !ok || inner == nil || (field.Kind() == reflect.Pointer && field.IsNil()) {
		return nil, fmt.Sprintf("%v embeds no conn", t)
	}
	return inner, ""
}

// ownMethod returns a method of t outside wrapperMethods that t defines
// itself rather than promotes from an embedded field. A promoted method's
// code is a wrapper the compiler writes, which the runtime places in the
// file "<autogenerated>"; so is a pointer type's copy of a value-receiver
// method, which is why the value type's method is asked first.
func ownMethod(t reflect.Type) (string, bool) {
	for i := range t.NumMethod() {
		m := t.Method(i)
		if wrapperMethods[m.Name] {
			continue
		}
		fn := m.Func
		if t.Kind() == reflect.Pointer {
			if vm, ok := t.Elem().MethodByName(m.Name); ok {
				fn = vm.Func
			}
		}
		if !autogenerated(fn.Pointer()) {
			return m.Name, true
		}
	}
	return "", false
}

// autogenerated reports whether the function at pc is compiler-made.
func autogenerated(pc uintptr) bool {
	f := runtime.FuncForPC(pc)
	if f == nil {
		return false
	}
	file, _ := f.FileLine(f.Entry())
	return file == "<autogenerated>"
}
