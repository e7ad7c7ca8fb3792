//go:build race

package sdk

// raceEnabled: the race detector is on, and sync.Pool drops some of what
// it is given, at random, so pooled buffers are allocated again.
const raceEnabled = true
