// Package etcd holds hubio's interoperability test with etcd: etcd v3.7's
// embedded server serves gRPC on one hub and clientv3 talks to it from
// another, both configured only through etcd's public configuration. It is a
// module of its own so that etcd's dependencies stay out of hubio's go.mod.
//
// The package has no code of its own; run its test with
//
//	cd interop/etcd && go test -race -count=1 ./...
package etcd
