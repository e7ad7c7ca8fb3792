//go:build !unix

package pgserver

import (
	"errors"
	"io/fs"
	"os"
	"syscall"
)

var errUnsupported = errors.New("the embedded PostgreSQL is supported on Unix systems only; set DATABASE_URL")

var quitSignal os.Signal = os.Kill

type osUser struct {
	name string
	uid  int
	gid  int
}

func childOwner() (*osUser, error)                 { return nil, errUnsupported }
func (o *osUser) canSearch(fs.FileInfo) bool       { return true }
func childAttr(*osUser, bool) *syscall.SysProcAttr { return nil }
func fileUID(fs.FileInfo) (int, bool)              { return 0, false }
func lockDir(string) (*os.File, error)             { return nil, errUnsupported }
func processAlive(int) bool                        { return false }
func interruptProcess(int) error                   { return errUnsupported }
func procInfo(int) (comm, cwd string, err error)   { return "", "", errUnsupported }

// totalMemory returns 0 (unknown) here: shared_buffers takes its fallback.
func totalMemory() uint64 { return 0 }

// hugetlbKB is unknown here.
func hugetlbKB(int) (int64, bool) { return 0, false }
