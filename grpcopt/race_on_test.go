//go:build race

package grpcopt_test

// raceEnabled reports whether the race detector is on: tests with a fixed
// amount of work do less of it then.
const raceEnabled = true
