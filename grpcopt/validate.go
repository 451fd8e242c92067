package grpcopt

import (
	"fmt"
	"math"
	"time"
)

// This file checks a Config's durations, per side: the server side (Listen,
// ServerOptions, and the one-value ServerOption and Credentials) reads
// UserTimeout and ServerKeepalive; the client side (DialOptions, Dial, and
// the one-value DialOption) reads UserTimeout, ClientKeepalive and
// DialTimeout. A field of the other side is never checked, so a bad
// ClientKeepalive does not fail Listen.
//
// The forms that return an error refuse a negative duration and a user
// timeout TCP_USER_TIMEOUT cannot hold. The one-value forms cannot return
// one, and, as grpc-go's own options (grpc.KeepaliveParams clamps a too
// small Time and logs a warning), they never panic: they drop a negative
// duration (its default applies), clamp a user timeout into range, and log
// a warning that names the field.

// maxUserTimeout is the largest TCP_USER_TIMEOUT: an int of milliseconds,
// 32 bits in the kernel.
const maxUserTimeout = math.MaxInt32 * time.Millisecond

// durationField is one duration of a Config a side reads.
type durationField struct {
	name string
	d    *time.Duration
	// userTimeout: the value may become TCP_USER_TIMEOUT, so it must also
	// be 0 or within 1ms to maxUserTimeout.
	userTimeout bool
}

// serverFields lists the durations the server side reads. The pointers
// reach into c and into its ServerKeepalive.
func (c *Config) serverFields() []durationField {
	f := []durationField{{"Config.UserTimeout", &c.UserTimeout, true}}
	if kp := c.ServerKeepalive; kp != nil {
		f = append(f,
			durationField{"ServerKeepalive.Time", &kp.Time, false},
			durationField{"ServerKeepalive.Timeout", &kp.Timeout, true},
			durationField{"ServerKeepalive.MaxConnectionIdle", &kp.MaxConnectionIdle, false},
			durationField{"ServerKeepalive.MaxConnectionAge", &kp.MaxConnectionAge, false},
			durationField{"ServerKeepalive.MaxConnectionAgeGrace", &kp.MaxConnectionAgeGrace, false},
		)
	}
	return f
}

// clientFields lists the durations the client side reads. The pointers
// reach into c and into its ClientKeepalive.
func (c *Config) clientFields() []durationField {
	f := []durationField{
		{"Config.UserTimeout", &c.UserTimeout, true},
		{"Config.DialTimeout", &c.DialTimeout, false},
	}
	if kp := c.ClientKeepalive; kp != nil {
		f = append(f,
			durationField{"ClientKeepalive.Time", &kp.Time, false},
			durationField{"ClientKeepalive.Timeout", &kp.Timeout, true},
		)
	}
	return f
}

// check reports why f's value cannot be used, or nil.
func (f durationField) check() error {
	d := *f.d
	switch {
	case d < 0:
		return fmt.Errorf("grpcopt: %s %v out of range: a negative duration (0 for the default)", f.name, d)
	case f.userTimeout && (d > maxUserTimeout || (d > 0 && d < time.Millisecond)):
		return fmt.Errorf("grpcopt: %s %v out of range: TCP_USER_TIMEOUT takes 1ms to %v (0 for the default)", f.name, d, maxUserTimeout)
	}
	return nil
}

// fix returns the value the one-value forms use in place of one check
// refuses: 0 (the default) for a negative duration, else the nearest
// bound of TCP_USER_TIMEOUT's range.
func (f durationField) fix() time.Duration {
	switch d := *f.d; {
	case d < 0:
		return 0
	case d > maxUserTimeout:
		return maxUserTimeout
	default:
		return time.Millisecond
	}
}

// validateServer reports the first server-side duration that cannot be
// used.
func (c Config) validateServer() error { return firstError(c.serverFields()) }

// validateClient reports the first client-side duration that cannot be
// used.
func (c Config) validateClient() error { return firstError(c.clientFields()) }

func firstError(fields []durationField) error {
	for _, f := range fields {
		if err := f.check(); err != nil {
			return err
		}
	}
	return nil
}

// forServer returns c with every server-side duration validateServer
// refuses replaced by the one fix gives, each logged at warning level; c's
// ServerKeepalive is copied, never changed.
func (c Config) forServer() Config {
	if c.validateServer() == nil {
		return c
	}
	if c.ServerKeepalive != nil {
		kp := *c.ServerKeepalive
		c.ServerKeepalive = &kp
	}
	fixAll(c.serverFields())
	return c
}

// forClient is forServer for the client side; c's ClientKeepalive is
// copied, never changed.
func (c Config) forClient() Config {
	if c.validateClient() == nil {
		return c
	}
	if c.ClientKeepalive != nil {
		kp := *c.ClientKeepalive
		c.ClientKeepalive = &kp
	}
	fixAll(c.clientFields())
	return c
}

func fixAll(fields []durationField) {
	for _, f := range fields {
		if err := f.check(); err != nil {
			v := f.fix()
			logger.Warningf("%v; using %v instead (the forms that return an error refuse it)", err, v)
			*f.d = v
		}
	}
}
