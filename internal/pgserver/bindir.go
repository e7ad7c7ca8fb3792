package pgserver

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// findBinDir locates the folder holding initdb and postgres: env
// FLYWHEEL_PG_BINDIR (an error if wrong, never skipped), `pg_config
// --bindir`, the newest /usr/lib/postgresql/*/bin (Debian, Ubuntu), PATH.
func findBinDir(getenv func(string) string) (string, error) {
	if dir := getenv("FLYWHEEL_PG_BINDIR"); dir != "" {
		if err := checkBinDir(dir); err != nil {
			return "", fmt.Errorf("FLYWHEEL_PG_BINDIR: %w", err)
		}
		return dir, nil
	}
	var candidates []string
	if out, err := exec.Command("pg_config", "--bindir").Output(); err == nil {
		candidates = append(candidates, strings.TrimSpace(string(out)))
	}
	versions, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	candidates = append(candidates, newestFirst(versions)...)
	if p, err := exec.LookPath("postgres"); err == nil {
		candidates = append(candidates, filepath.Dir(p))
	}
	for _, dir := range candidates {
		if checkBinDir(dir) == nil {
			return dir, nil
		}
	}
	return "", errors.New("cannot find the PostgreSQL server programs (initdb, postgres): install the PostgreSQL server, set FLYWHEEL_PG_BINDIR to their folder, or set DATABASE_URL")
}

// checkBinDir reports whether dir holds executable initdb and postgres.
func checkBinDir(dir string) error {
	for _, name := range []string{"initdb", "postgres"} {
		p := filepath.Join(dir, name)
		fi, err := os.Stat(p)
		if err != nil {
			return err
		}
		if fi.IsDir() || fi.Mode().Perm()&0o111 == 0 {
			return fmt.Errorf("%s is not an executable file", p)
		}
	}
	return nil
}

// newestFirst orders folders like /usr/lib/postgresql/<version>/bin by
// version, highest first ("16" above "9.6"); unparsable versions go last.
func newestFirst(dirs []string) []string {
	version := func(dir string) float64 {
		v, err := strconv.ParseFloat(filepath.Base(filepath.Dir(dir)), 64)
		if err != nil {
			return -1
		}
		return v
	}
	out := slices.Clone(dirs)
	slices.SortStableFunc(out, func(a, b string) int {
		va, vb := version(a), version(b)
		switch {
		case va > vb:
			return -1
		case va < vb:
			return 1
		}
		return 0
	})
	return out
}
