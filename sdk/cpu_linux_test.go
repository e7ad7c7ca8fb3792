//go:build linux

package sdk

import (
	"syscall"
	"time"
)

// threadCPU returns the CPU time, user and system, the calling thread has
// used.
func threadCPU() (time.Duration, bool) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(1 /* RUSAGE_THREAD */, &ru); err != nil {
		return 0, false
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), true
}
