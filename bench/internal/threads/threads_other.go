//go:build !linux

package threads

import (
	"context"
	"errors"
	"fmt"
	"net"
)

var errUnsupported = fmt.Errorf("threads: blocking sockets are implemented on Linux only: %w", errors.ErrUnsupported)

// Listener is unavailable outside Linux.
type Listener struct{ net.Listener }

// Listen returns an error matching errors.ErrUnsupported outside Linux.
func Listen(address string) (*Listener, error) { return nil, errUnsupported }

// Dial returns an error matching errors.ErrUnsupported outside Linux.
func Dial(ctx context.Context, address string) (net.Conn, error) { return nil, errUnsupported }
