package pgserver

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

const maxLogSize = 10 << 20 // postgres.log is rotated to postgres.log.1 past this at start

// DefaultDir returns the data folder used when FLYWHEEL_DATA_DIR is unset:
// ".flywheel/pgdata" under the current working directory, as an absolute path.
func DefaultDir() (string, error) {
	wd, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("pgserver: default dir: %w", err)
	}
	return filepath.Join(wd, ".flywheel", "pgdata"), nil
}

// prepareDir creates the data folder (0700) and its parents (0755), and
// checks that owner (when not nil) can reach it.
func prepareDir(dir string, owner *osUser) error {
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return err
	}
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return fmt.Errorf("data folder %s is not a directory", dir)
	}
	if owner == nil {
		return nil
	}
	return checkTraversable(dir, owner)
}

// claimDir reports whether dir already holds a cluster. When the children
// run as owner, it gives an empty folder to owner, and checks that an
// existing cluster belongs to owner. The caller holds the folder lock.
func claimDir(dir string, owner *osUser) (initialized bool, err error) {
	initialized, err = hasCluster(dir)
	if err != nil || owner == nil {
		return initialized, err
	}
	if !initialized {
		return false, os.Chown(dir, owner.uid, owner.gid)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return false, err
	}
	if uid, ok := fileUID(fi); ok && uid != owner.uid {
		return false, fmt.Errorf("data folder %s is owned by uid %d, but PostgreSQL runs as OS user %s (uid %d) when flywheel runs as root; chown -R it or set FLYWHEEL_DATA_DIR to another folder",
			dir, uid, owner.name, owner.uid)
	}
	return true, nil
}

// checkTraversable reports the first parent folder of dir that owner cannot
// search (x permission by mode bits; ACLs are not consulted).
func checkTraversable(dir string, owner *osUser) error {
	var parents []string
	for p := filepath.Dir(dir); ; p = filepath.Dir(p) {
		parents = append(parents, p)
		if p == filepath.Dir(p) {
			break
		}
	}
	for i := len(parents) - 1; i >= 0; i-- {
		p := parents[i]
		fi, err := os.Stat(p)
		if err != nil {
			return err
		}
		if !owner.canSearch(fi) {
			return fmt.Errorf("folder %s is not traversable by OS user %s (uid %d), which runs PostgreSQL when flywheel runs as root; allow it (chmod o+x %s) or set FLYWHEEL_DATA_DIR to a data folder elsewhere",
				p, owner.name, owner.uid, p)
		}
	}
	return nil
}

// hasCluster reports whether dir holds a cluster (PG_VERSION). An empty dir
// does not; a non-empty one without PG_VERSION is an error, never overwritten.
func hasCluster(dir string) (bool, error) {
	if _, err := os.Stat(filepath.Join(dir, "PG_VERSION")); err == nil {
		return true, nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return false, err
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return false, err
	}
	if len(entries) > 0 {
		return false, fmt.Errorf("data folder %s is not empty and holds no PostgreSQL cluster (no PG_VERSION)", dir)
	}
	return false, nil
}

func initdb(ctx context.Context, binDir, dir string, owner *osUser, fast bool) error {
	args := []string{"-D", dir, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C"}
	if fast {
		args = append(args, "--no-sync")
	}
	cmd := exec.CommandContext(ctx, filepath.Join(binDir, "initdb"), args...)
	cmd.Dir = "/" // the caller's folder may be closed to the postgres user
	cmd.Env = childEnv()
	cmd.SysProcAttr = childAttr(owner, false)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("initdb %s: %w; output ends:\n%s", dir, err, lastLines(out, 20))
	}
	return nil
}

// reclaimOrphan deals with a postmaster.pid that names a live process. The
// caller holds the folder lock, so no live flywheel process owns the folder:
// a postgres serving it was left behind by one that died, and is stopped.
// A live process that is not a postgres on this folder means the pid was
// recycled, and the stale file is removed. Stale files naming dead processes
// are left to postgres, which removes them itself.
func reclaimOrphan(dir string, logger *slog.Logger) error {
	pidFile := filepath.Join(dir, "postmaster.pid")
	data, err := os.ReadFile(pidFile)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	} else if err != nil {
		return err
	}
	first, _, _ := strings.Cut(string(data), "\n")
	pid, err := strconv.Atoi(strings.TrimSpace(first))
	if err != nil || pid <= 0 || !processAlive(pid) {
		return nil
	}
	isOrphan := false
	if pid != os.Getpid() && pid != os.Getppid() {
		serves, err := servesDir(pid, dir)
		if err != nil {
			return fmt.Errorf("%s names running process %d, which cannot be checked (%v); if it is a postgres on this folder stop it (pg_ctl -D %s stop -m fast), otherwise remove the file",
				pidFile, pid, err, dir)
		}
		isOrphan = serves
	}
	if !isOrphan {
		logger.Warn("pgserver: removing stale postmaster.pid", "dir", dir, "pid", pid)
		return os.Remove(pidFile)
	}
	logger.Warn("pgserver: stopping a server left running by an earlier process", "dir", dir, "pid", pid)
	if err := interruptProcess(pid); err != nil {
		return fmt.Errorf("stop orphaned postgres %d: %w", pid, err)
	}
	// It is not our child, so wait for its last act: removing postmaster.pid.
	for deadline := time.Now().Add(stopTimeout); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if _, err := os.Stat(pidFile); errors.Is(err, fs.ErrNotExist) {
			return nil
		}
	}
	return fmt.Errorf("orphaned postgres %d on %s did not stop within %s", pid, dir, stopTimeout)
}

// servesDir reports whether pid is a postgres whose working folder is dir
// (the postmaster chdirs to its data folder).
func servesDir(pid int, dir string) (bool, error) {
	comm, cwd, err := procInfo(pid)
	if err != nil {
		return false, err
	}
	want, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return false, err
	}
	return comm == "postgres" && cwd == want, nil
}

// openLog opens the server log for appending and returns its current size,
// where this run's lines begin.
func openLog(path string, owner *osUser) (*os.File, int64, error) {
	if fi, err := os.Stat(path); err == nil && fi.Size() > maxLogSize {
		if err := os.Rename(path, path+".1"); err != nil {
			return nil, 0, err
		}
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return nil, 0, err
	}
	if owner != nil {
		if err := f.Chown(owner.uid, owner.gid); err != nil {
			f.Close()
			return nil, 0, err
		}
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, err
	}
	return f, fi.Size(), nil
}

// logTail returns the last lines of the log written since offset from.
func logTail(path string, from int64) string {
	f, err := os.Open(path)
	if err != nil {
		return "(" + err.Error() + ")"
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && fi.Size()-from > 8<<10 {
		from = fi.Size() - 8<<10
	}
	if _, err := f.Seek(from, io.SeekStart); err != nil {
		return "(" + err.Error() + ")"
	}
	data, _ := io.ReadAll(f)
	return lastLines(data, 30)
}

func lastLines(data []byte, n int) string {
	lines := bytes.Split(bytes.TrimRight(data, "\n"), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	s := string(bytes.Join(lines, []byte("\n")))
	if strings.TrimSpace(s) == "" {
		return "(empty)"
	}
	return s
}
