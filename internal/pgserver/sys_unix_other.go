//go:build unix && !linux

package pgserver

import (
	"errors"
	"syscall"
)

// setParentDeathSignal does nothing: only Linux has a parent-death signal.
// A server outliving its process is stopped by the next Start on the folder.
func setParentDeathSignal(*syscall.SysProcAttr) {}

func procInfo(int) (comm, cwd string, err error) {
	return "", "", errors.New("process inspection is supported on Linux only")
}

// totalMemory returns 0 (unknown) here: shared_buffers takes its fallback.
func totalMemory() uint64 { return 0 }

// hugetlbKB is unknown here.
func hugetlbKB(int) (int64, bool) { return 0, false }
