package testutil

import (
	"context"
	"io"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// The echo service is a gRPC service written without generated code: its
// messages are google.protobuf.BytesValue, and its methods send back what
// they receive.
//
//	service hubio.testutil.Echo {
//	  rpc Unary(BytesValue) returns (BytesValue);
//	  rpc Stream(stream BytesValue) returns (stream BytesValue);
//	}
const (
	EchoServiceName  = "hubio.testutil.Echo"
	EchoUnaryMethod  = "/" + EchoServiceName + "/Unary"
	EchoStreamMethod = "/" + EchoServiceName + "/Stream"
)

// EchoServer is the server side of the echo service. The zero value echoes;
// set the hooks to observe or change what it does.
type EchoServer struct {
	// OnUnary, if set, is called with each unary request's payload and
	// returns the reply payload or an error (a status error for a code).
	OnUnary func(ctx context.Context, in []byte) ([]byte, error)
}

// RegisterEchoServer registers srv (nil means a plain echo) on s.
func RegisterEchoServer(s grpc.ServiceRegistrar, srv *EchoServer) {
	if srv == nil {
		srv = &EchoServer{}
	}
	s.RegisterService(&echoServiceDesc, srv)
}

var echoServiceDesc = grpc.ServiceDesc{
	ServiceName: EchoServiceName,
	HandlerType: (*any)(nil),
	Methods: []grpc.MethodDesc{{
		MethodName: "Unary",
		Handler: func(srv any, ctx context.Context, dec func(any) error, interceptor grpc.UnaryServerInterceptor) (any, error) {
			in := new(wrapperspb.BytesValue)
			if err := dec(in); err != nil {
				return nil, err
			}
			s := srv.(*EchoServer)
			if interceptor == nil {
				return s.unary(ctx, in)
			}
			info := &grpc.UnaryServerInfo{Server: srv, FullMethod: EchoUnaryMethod}
			return interceptor(ctx, in, info, func(ctx context.Context, req any) (any, error) {
				return s.unary(ctx, req.(*wrapperspb.BytesValue))
			})
		},
	}},
	Streams: []grpc.StreamDesc{{
		StreamName:    "Stream",
		ServerStreams: true,
		ClientStreams: true,
		Handler: func(_ any, stream grpc.ServerStream) error {
			for {
				m := new(wrapperspb.BytesValue)
				if err := stream.RecvMsg(m); err == io.EOF {
					return nil
				} else if err != nil {
					return err
				}
				if err := stream.SendMsg(m); err != nil {
					return err
				}
			}
		},
	}},
}

// unary answers one unary request.
func (s *EchoServer) unary(ctx context.Context, in *wrapperspb.BytesValue) (any, error) {
	if s.OnUnary == nil {
		return in, nil
	}
	out, err := s.OnUnary(ctx, in.Value)
	if err != nil {
		return nil, err
	}
	return wrapperspb.Bytes(out), nil
}

// EchoClient calls the echo service.
type EchoClient struct{ cc grpc.ClientConnInterface }

// NewEchoClient returns a client on cc.
func NewEchoClient(cc grpc.ClientConnInterface) *EchoClient { return &EchoClient{cc: cc} }

// Unary sends payload and returns the reply's payload.
func (c *EchoClient) Unary(ctx context.Context, payload []byte, opts ...grpc.CallOption) ([]byte, error) {
	out := new(wrapperspb.BytesValue)
	if err := c.cc.Invoke(ctx, EchoUnaryMethod, wrapperspb.Bytes(payload), out, opts...); err != nil {
		return nil, err
	}
	return out.Value, nil
}

// Stream opens a bidirectional echo stream.
func (c *EchoClient) Stream(ctx context.Context, opts ...grpc.CallOption) (*EchoStream, error) {
	s, err := c.cc.NewStream(ctx, &echoServiceDesc.Streams[0], EchoStreamMethod, opts...)
	if err != nil {
		return nil, err
	}
	return &EchoStream{s: s}, nil
}

// EchoStream is the client side of an echo stream.
type EchoStream struct{ s grpc.ClientStream }

// Send sends one message.
func (s *EchoStream) Send(payload []byte) error { return s.s.SendMsg(wrapperspb.Bytes(payload)) }

// Recv receives one echoed message; io.EOF after the server has finished.
func (s *EchoStream) Recv() ([]byte, error) {
	m := new(wrapperspb.BytesValue)
	if err := s.s.RecvMsg(m); err != nil {
		return nil, err
	}
	return m.Value, nil
}

// CloseSend ends the sending side; the server then finishes the stream.
func (s *EchoStream) CloseSend() error { return s.s.CloseSend() }

// Context returns the stream's context.
func (s *EchoStream) Context() context.Context { return s.s.Context() }
