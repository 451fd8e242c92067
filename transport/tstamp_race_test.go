//go:build race

package transport_test

// raceOn is true under the race detector, which makes each connect cycle
// about ten times slower.
const raceOn = true
