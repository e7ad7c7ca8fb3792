package pgserver

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
)

// initCached fills the empty data folder dir with a copy of a pristine initdb
// result kept under cache, or runs initdb and keeps a copy of its result
// there. The cache is best effort: any trouble with it falls back to initdb.
// Entries are keyed by the binaries and initdb options, and written by
// rename, so concurrent test processes can share the folder.
func initCached(ctx context.Context, binDir, dir string, owner *osUser, fast bool, cache string) error {
	key, err := initKey(binDir, fast)
	if err != nil {
		return initdb(ctx, binDir, dir, owner, fast)
	}
	entry := filepath.Join(cache, "initdb-"+key)
	if _, err := os.Stat(filepath.Join(entry, "PG_VERSION")); err == nil {
		if err := copyTree(entry, dir, owner); err == nil {
			return nil
		}
		if err := emptyDir(dir); err != nil {
			return err
		}
	}
	if err := initdb(ctx, binDir, dir, owner, fast); err != nil {
		return err
	}
	tmp := fmt.Sprintf("%s.tmp-%08x", entry, rand.Uint32())
	if err := os.MkdirAll(cache, 0o700); err == nil {
		if err := copyTree(dir, tmp, nil); err == nil && os.Rename(tmp, entry) == nil {
			return nil
		}
		os.RemoveAll(tmp) // lost the race to another process, or failed
	}
	return nil
}

// initKey identifies an initdb result: the binaries (path, size, mtime) and
// the options.
func initKey(binDir string, fast bool) (string, error) {
	h := sha256.New()
	fmt.Fprintf(h, "v1 %s fast=%t", binDir, fast)
	for _, name := range []string{"initdb", "postgres"} {
		fi, err := os.Stat(filepath.Join(binDir, name))
		if err != nil {
			return "", err
		}
		fmt.Fprintf(h, " %s %d %d", name, fi.Size(), fi.ModTime().UnixNano())
	}
	return hex.EncodeToString(h.Sum(nil))[:16], nil
}

// copyTree copies the folder src into dst (created if missing), keeping
// permissions, and gives everything to owner when not nil.
func copyTree(src, dst string, owner *osUser) error {
	return filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		fi, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			if err := os.Mkdir(target, fi.Mode().Perm()); err != nil && !os.IsExist(err) {
				return err
			}
			if err := os.Chmod(target, fi.Mode().Perm()); err != nil {
				return err
			}
		case d.Type()&fs.ModeSymlink != 0:
			link, err := os.Readlink(path)
			if err != nil {
				return err
			}
			if err := os.Symlink(link, target); err != nil {
				return err
			}
			if owner != nil {
				return os.Lchown(target, owner.uid, owner.gid)
			}
			return nil
		case d.Type().IsRegular():
			if err := copyFile(path, target, fi.Mode().Perm()); err != nil {
				return err
			}
		default:
			return fmt.Errorf("copy %s: unexpected file type %v", path, d.Type())
		}
		if owner != nil {
			return os.Chown(target, owner.uid, owner.gid)
		}
		return nil
	})
}

func copyFile(src, dst string, perm fs.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// emptyDir removes everything inside dir, keeping dir.
func emptyDir(dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
			return err
		}
	}
	return nil
}
