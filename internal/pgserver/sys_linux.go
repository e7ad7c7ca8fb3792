package pgserver

import (
	"os"
	"strconv"
	"strings"
	"syscall"
)

// setParentDeathSignal makes the kernel send SIGINT (fast shutdown) to the
// server if the thread that started it exits, which launch arranges to be
// when the process dies.
func setParentDeathSignal(attr *syscall.SysProcAttr) {
	attr.Pdeathsig = syscall.SIGINT
}

// procInfo returns the command name and working folder of a process.
func procInfo(pid int) (comm, cwd string, err error) {
	base := "/proc/" + strconv.Itoa(pid)
	b, err := os.ReadFile(base + "/comm")
	if err != nil {
		return "", "", err
	}
	cwd, err = os.Readlink(base + "/cwd")
	if err != nil {
		return "", "", err
	}
	return strings.TrimSpace(string(b)), cwd, nil
}

// totalMemory returns the machine's physical memory in bytes (0: unknown).
func totalMemory() uint64 {
	var info syscall.Sysinfo_t
	if syscall.Sysinfo(&info) != nil {
		return 0
	}
	return uint64(info.Totalram) * uint64(info.Unit)
}

// hugetlbKB returns the huge pages a process maps (HugetlbPages in its
// /proc status), in kB.
func hugetlbKB(pid int) (int64, bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, false
	}
	for line := range strings.Lines(string(b)) {
		if rest, ok := strings.CutPrefix(line, "HugetlbPages:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb, err == nil
		}
	}
	return 0, false
}
