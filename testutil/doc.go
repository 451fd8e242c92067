// Package testutil helps users test code that runs on hubio: goroutine-leak
// checks that know the default hub and grpc-go, an in-process gRPC echo
// service on a hub, and a fault-injecting conn and listener driven by a
// hub's timers.
package testutil
