//go:build unix

package pgserver

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"slices"
	"strconv"
	"syscall"
)

// quitSignal asks postgres for an immediate shutdown.
var quitSignal os.Signal = syscall.SIGQUIT

// osUser is the OS user the children run as when the caller is root.
type osUser struct {
	name string
	uid  int
	gid  int
	gids []int // primary and supplementary groups
}

// childOwner returns nil when the children can run as the caller, and the
// "postgres" OS user when the caller is root (initdb and postgres refuse
// to run as root).
func childOwner() (*osUser, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	const name = "postgres"
	u, err := user.Lookup(name)
	if err != nil {
		return nil, fmt.Errorf("running as root, PostgreSQL must run as OS user %q, which cannot be found (%w); create it or run flywheel as a non-root user", name, err)
	}
	o := &osUser{name: name}
	if o.uid, err = strconv.Atoi(u.Uid); err != nil {
		return nil, fmt.Errorf("user %s: uid %q: %w", name, u.Uid, err)
	}
	if o.gid, err = strconv.Atoi(u.Gid); err != nil {
		return nil, fmt.Errorf("user %s: gid %q: %w", name, u.Gid, err)
	}
	o.gids = []int{o.gid}
	if ids, err := u.GroupIds(); err == nil {
		for _, id := range ids {
			if g, err := strconv.Atoi(id); err == nil && !slices.Contains(o.gids, g) {
				o.gids = append(o.gids, g)
			}
		}
	}
	return o, nil
}

// canSearch reports whether the user may traverse the folder fi by its mode
// bits.
func (o *osUser) canSearch(fi fs.FileInfo) bool {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return true
	}
	mode := fi.Mode().Perm()
	switch {
	case int(st.Uid) == o.uid:
		return mode&0o100 != 0
	case slices.Contains(o.gids, int(st.Gid)):
		return mode&0o010 != 0
	default:
		return mode&0o001 != 0
	}
}

// childAttr runs a child as owner (nil: as the caller). A server child also
// gets a parent-death signal where the platform has one.
func childAttr(owner *osUser, server bool) *syscall.SysProcAttr {
	attr := &syscall.SysProcAttr{}
	if owner != nil {
		groups := make([]uint32, 0, len(owner.gids))
		for _, g := range owner.gids {
			groups = append(groups, uint32(g))
		}
		attr.Credential = &syscall.Credential{Uid: uint32(owner.uid), Gid: uint32(owner.gid), Groups: groups}
	}
	if server {
		setParentDeathSignal(attr)
	}
	return attr
}

func fileUID(fi fs.FileInfo) (int, bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, false
	}
	return int(st.Uid), true
}

// lockDir takes an exclusive flock on the data folder itself, held until the
// returned file is closed (or the process dies). The kernel drops it with the
// process, so a crash never leaves a stale lock.
func lockDir(dir string) (*os.File, error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("%s: %w (another flywheel process, or test, has it open; stop it or use another FLYWHEEL_DATA_DIR)", dir, ErrDirInUse)
		}
		return nil, fmt.Errorf("lock %s: %w", dir, err)
	}
	return f, nil
}

// processAlive reports whether a process with this pid exists (possibly
// another user's).
func processAlive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// interruptProcess asks a postgres for a fast shutdown.
func interruptProcess(pid int) error {
	return syscall.Kill(pid, syscall.SIGINT)
}
