package pgserver

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Attach returns the server that another live process started on dir (the
// one holding its lock), so that a second flywheel command, such as
// `flywheel keys create` while `flywheel serve` runs, can use it. The
// attached cluster is not this process's to stop: its Stop does nothing.
func Attach(dir string) (*Cluster, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	// postmaster.pid: line 1 the pid, line 4 the port.
	data, err := os.ReadFile(filepath.Join(dir, "postmaster.pid"))
	if err != nil {
		return nil, fmt.Errorf("pgserver: attach: no running server on %s: %w", dir, err)
	}
	lines := strings.Split(string(data), "\n")
	if len(lines) < 4 {
		return nil, fmt.Errorf("pgserver: attach: %s/postmaster.pid is incomplete (the server may be starting; retry)", dir)
	}
	pid, err1 := strconv.Atoi(strings.TrimSpace(lines[0]))
	port, err2 := strconv.Atoi(strings.TrimSpace(lines[3]))
	if err := errors.Join(err1, err2); err != nil {
		return nil, fmt.Errorf("pgserver: attach: read postmaster.pid: %w", err)
	}
	if !processAlive(pid) {
		return nil, fmt.Errorf("pgserver: attach: the server of %s (pid %d) is not running", dir, pid)
	}
	if ok, err := servesDir(pid, dir); err != nil || !ok {
		return nil, fmt.Errorf("pgserver: attach: process %d does not serve %s", pid, dir)
	}
	return &Cluster{dir: dir, port: port, pid: pid, attached: true}, nil
}
