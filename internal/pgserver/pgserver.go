// Package pgserver runs a private PostgreSQL cluster from the binaries
// installed on the machine. It is flywheel's embedded default: with no
// DATABASE_URL, flywheel calls Start on a data folder (DefaultDir or
// FLYWHEEL_DATA_DIR) and Stop in its shutdown path. Tests reach it through
// internal/pgtest.
//
// The server listens only on 127.0.0.1 with trust authentication and no unix
// socket, so any local user can connect as the superuser "postgres": it is a
// single-machine default, not a shared deployment.
//
// Lifecycle guarantees:
//   - One process per data folder: Start takes an exclusive lock on the folder
//     and fails with ErrDirInUse while another live process holds it.
//   - The postgres server is a child of the calling process. On Linux it gets
//     SIGINT (fast shutdown) if the caller dies without calling Stop.
//   - A server left running by a process that died anyway (no lock holder, but
//     postmaster.pid names a live postgres serving the folder) is an orphan:
//     Start stops it with a fast shutdown and starts a fresh one. It is never
//     reused, because its port and settings are unknown.
//
// Running as root: initdb and postgres refuse to, so the children run as the
// OS user "postgres", the data folder is owned by it, and every parent folder
// must be traversable by it.
//
// It imports only the standard library and pgx; it must not import other
// flywheel packages.
package pgserver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// ErrDirInUse reports that another process holds the data folder's lock.
var ErrDirInUse = errors.New("data folder is in use by another process")

const (
	logName      = "postgres.log"
	readyTimeout = 60 * time.Second // crash recovery of a large cluster can be slow
	stopTimeout  = 60 * time.Second
)

// Options for Start.
type Options struct {
	// Dir is the data folder. It is created (initdb) if empty or missing and
	// reused if it already holds a cluster.
	Dir string
	// Port is the TCP port on 127.0.0.1; 0 picks a free one.
	Port int
	// BinDir holds initdb and postgres. "" finds it: env FLYWHEEL_PG_BINDIR,
	// then `pg_config --bindir`, then the newest /usr/lib/postgresql/*/bin,
	// then PATH.
	BinDir string
	// Logger receives a few lines about initdb, start and stop; nil discards.
	Logger *slog.Logger
	// Fast trades durability for speed (tests): fsync, synchronous_commit and
	// full_page_writes off, and initdb without fsync.
	Fast bool
	// Settings are extra server settings passed as -c name=value after the
	// defaults (max_connections=200, shared_buffers a quarter of the
	// machine's memory between 128MB and 8GB, as PostgreSQL's manual
	// suggests for a dedicated server, max_wal_size=8GB,
	// checkpoint_timeout=15min, and wal_compression=lz4 unless Fast when
	// PostgreSQL has lz4), so they override them. Tests use
	// smaller values.
	Settings map[string]string
	// InitCache, when set, is a folder keeping a pristine initdb result per
	// PostgreSQL installation; a new data folder is filled by copying it
	// instead of running initdb (about a second saved). It is meant for
	// tests, which start many clusters; flywheel itself leaves it "".
	InitCache string
}

// Cluster is a running private PostgreSQL server. Its Stop method must be
// called when the caller is done; Start does not arrange it.
type Cluster struct {
	dir    string
	port   int
	pid    int // the postmaster's
	logger *slog.Logger
	lock   *os.File // flock on the data folder, released by Stop

	cmd     *exec.Cmd
	exited  chan struct{} // closed when the postgres process has exited
	waitErr error         // cmd.Wait's result, readable after exited is closed

	stopOnce sync.Once
	stopErr  error
	attached bool // started by another process (Attach): not ours to stop
}

// Start initializes the data folder if needed, starts postgres on it and
// waits until it accepts connections. The caller must call Stop.
func Start(ctx context.Context, opts Options) (*Cluster, error) {
	c, err := start(ctx, opts)
	if err != nil {
		return nil, fmt.Errorf("pgserver: start: %w", err)
	}
	return c, nil
}

func start(ctx context.Context, opts Options) (*Cluster, error) {
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if opts.Dir == "" {
		return nil, errors.New("no data folder given")
	}
	dir, err := filepath.Abs(opts.Dir)
	if err != nil {
		return nil, err
	}
	binDir := opts.BinDir
	if binDir == "" {
		if binDir, err = findBinDir(os.Getenv); err != nil {
			return nil, err
		}
	} else if err := checkBinDir(binDir); err != nil {
		return nil, err
	}
	owner, err := childOwner()
	if err != nil {
		return nil, err
	}
	if err := prepareDir(dir, owner); err != nil {
		return nil, err
	}
	lock, err := lockDir(dir)
	if err != nil {
		return nil, err
	}
	c, err := startLocked(ctx, dir, binDir, owner, lock, opts, logger)
	if err != nil {
		lock.Close()
		return nil, err
	}
	return c, nil
}

func startLocked(ctx context.Context, dir, binDir string, owner *osUser, lock *os.File, opts Options, logger *slog.Logger) (*Cluster, error) {
	began := time.Now()
	initialized, err := claimDir(dir, owner)
	if err != nil {
		return nil, err
	}
	if !initialized {
		if opts.InitCache != "" {
			err = initCached(ctx, binDir, dir, owner, opts.Fast, opts.InitCache)
		} else {
			err = initdb(ctx, binDir, dir, owner, opts.Fast)
		}
		if err != nil {
			return nil, err
		}
		logger.Info("pgserver: initialized data folder", "dir", dir, "duration", time.Since(began).Round(time.Millisecond))
	} else if err := reclaimOrphan(dir, logger); err != nil {
		return nil, err
	}
	// A port picked here can be taken by someone else before postgres binds
	// it; with Port 0 that is retried with another port.
	for attempt := 1; ; attempt++ {
		port := opts.Port
		if port == 0 {
			if port, err = FreePort(); err != nil {
				return nil, err
			}
		}
		c, err := launch(ctx, dir, binDir, port, owner, opts)
		if err == nil {
			c.lock = lock
			c.logger = logger
			logger.Info("pgserver: started", "dir", dir, "port", port, "duration", time.Since(began).Round(time.Millisecond))
			return c, nil
		}
		if opts.Port != 0 || attempt == 3 || !errors.Is(err, errPortInUse) {
			return nil, err
		}
	}
}

var errPortInUse = errors.New("port in use")

// launch starts postgres as a child and waits until it accepts connections.
func launch(ctx context.Context, dir, binDir string, port int, owner *osUser, opts Options) (*Cluster, error) {
	logPath := filepath.Join(dir, logName)
	logFile, logStart, err := openLog(logPath, owner)
	if err != nil {
		return nil, err
	}
	defer logFile.Close() // the child keeps its own descriptor

	cmd := exec.Command(filepath.Join(binDir, "postgres"), serverArgs(dir, port, opts, !opts.Fast && builtWithLZ4(binDir))...)
	cmd.Dir = dir
	cmd.Env = childEnv()
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	cmd.SysProcAttr = childAttr(owner, true)
	c := &Cluster{dir: dir, port: port, cmd: cmd, exited: make(chan struct{})}

	// PR_SET_PDEATHSIG fires when the thread that forked the child exits, not
	// the process, so the fork happens on a locked thread that stays alive
	// (blocked in Wait) for as long as the child does.
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			return // the locked thread is discarded; there is no child
		}
		started <- nil
		c.waitErr = cmd.Wait()
		close(c.exited)
		runtime.UnlockOSThread()
	}()
	if err := <-started; err != nil {
		return nil, fmt.Errorf("run postgres: %w", err)
	}
	c.pid = cmd.Process.Pid

	if err := c.waitReady(ctx); err != nil {
		c.kill()
		tail := logTail(logPath, logStart)
		if strings.Contains(tail, "could not bind") || strings.Contains(tail, "Address already in use") {
			err = fmt.Errorf("%w: %w", errPortInUse, err)
		}
		return nil, fmt.Errorf("%w; server log %s ends:\n%s", err, logPath, tail)
	}
	return c, nil
}

// sharedBuffers is the default shared_buffers for a machine with mem bytes
// of memory (0: unknown): a quarter of it, between 128MB and 8GB.
func sharedBuffers(mem uint64) string {
	mb := mem / 4 >> 20
	if mem == 0 {
		mb = 256
	}
	return strconv.FormatUint(min(max(mb, 128), 8<<10), 10) + "MB"
}

// builtWithLZ4 says whether the PostgreSQL in binDir was built with lz4,
// from its pg_config; without one, it says no.
func builtWithLZ4(binDir string) bool {
	out, err := exec.Command(filepath.Join(binDir, "pg_config"), "--configure").Output()
	return err == nil && strings.Contains(string(out), "--with-lz4")
}

// serverArgs are the arguments of postgres; lz4 says whether it was built
// with lz4 (builtWithLZ4).
func serverArgs(dir string, port int, opts Options, lz4 bool) []string {
	args := []string{
		"-D", dir,
		"-p", strconv.Itoa(port),
		"-c", "listen_addresses=127.0.0.1",
		// No unix socket: /var/run/postgresql belongs to the system server,
		// and a socket path under a deep data folder can exceed 107 bytes.
		"-c", "unix_socket_directories=",
		"-c", "max_connections=200",
		"-c", "shared_buffers=" + sharedBuffers(totalMemory()),
		// Checkpoints by time, not by WAL volume: with the default 1GB,
		// sustained ingestion forced a checkpoint every few seconds, and
		// the first change to each page after one writes the whole page
		// to WAL. At 50,000 events/s this halved the WAL written and made
		// the aggregator's tracks step 22% cheaper (BENCHMARKS.md). The WAL
		// folder grows to a few GB only under such a load.
		"-c", "max_wal_size=8GB",
		"-c", "checkpoint_timeout=15min",
	}
	if lz4 && !opts.Fast {
		// Those whole pages compressed: at 50,000 events/s the tracks step
		// took another 13% less (BENCHMARKS.md). lz4 costs little CPU;
		// PostgreSQL refuses the setting when built without it.
		args = append(args, "-c", "wal_compression=lz4")
	}
	if opts.Fast {
		args = append(args, "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off")
	}
	names := make([]string, 0, len(opts.Settings))
	for name := range opts.Settings {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		args = append(args, "-c", name+"="+opts.Settings[name])
	}
	return args
}

// waitReady polls until the server accepts a connection, the child exits, or
// the timeout or ctx ends.
func (c *Cluster) waitReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	cfg, err := pgx.ParseConfig(c.URL("postgres"))
	if err != nil {
		return err
	}
	cfg.ConnectTimeout = 2 * time.Second
	tick := time.NewTicker(25 * time.Millisecond)
	defer tick.Stop()
	for {
		conn, err := pgx.ConnectConfig(ctx, cfg)
		if err == nil {
			// Another server may own the port (ours then fails to bind and
			// exits): make sure this is ours.
			var dataDir string
			err = conn.QueryRow(ctx, "SELECT current_setting('data_directory')").Scan(&dataDir)
			conn.Close(ctx)
			if err != nil {
				return err
			}
			if dataDir != c.dir {
				return fmt.Errorf("%w: another PostgreSQL answers on 127.0.0.1:%d", errPortInUse, c.port)
			}
			return nil
		}
		select {
		case <-c.exited:
			return fmt.Errorf("postgres exited during startup: %v", c.waitErr)
		case <-ctx.Done():
			return fmt.Errorf("postgres not accepting connections on port %d: %w (last: %v)", c.port, ctx.Err(), err)
		case <-tick.C:
		}
	}
}

// URL returns the URL of database on this server:
// postgres://postgres@127.0.0.1:PORT/DATABASE?sslmode=disable.
func (c *Cluster) URL(database string) string {
	host := net.JoinHostPort("127.0.0.1", strconv.Itoa(c.port))
	return "postgres://postgres@" + host + "/" + url.PathEscape(database) + "?sslmode=disable"
}

// Dir returns the absolute path of the data folder.
func (c *Cluster) Dir() string { return c.dir }

// HugePages says whether the server's shared memory is in huge pages,
// and false for known when that is unknown (not Linux, or no longer
// running). Each backend that touches a page of the shared buffers for the
// first time takes a page fault; with 4 kB pages those faults made a new
// connection's first index probes 4-5 times as slow, with 2 MB pages they
// are gone (BENCHMARKS.md, "A backend's first pages"). PostgreSQL uses
// huge pages for the whole of its shared memory when the machine has
// enough of them reserved (huge_pages=try, its default), else none.
func (c *Cluster) HugePages() (on, known bool) {
	if c.pid == 0 {
		return false, false
	}
	kb, ok := hugetlbKB(c.pid)
	return kb > 0, ok
}

// Port returns the TCP port the server listens on at 127.0.0.1.
func (c *Cluster) Port() int { return c.port }

// Stop shuts the server down (fast: open sessions are ended, committed data
// is kept), waits for it to exit and releases the data folder. It is safe to
// call more than once; later calls return the first result. It reports an
// error if the server had already exited on its own.
func (c *Cluster) Stop() error {
	if c.attached {
		return nil
	}
	c.stopOnce.Do(func() {
		select {
		case <-c.exited:
			if c.waitErr != nil {
				c.stopErr = fmt.Errorf("pgserver: stop: server had exited: %w", c.waitErr)
			} else {
				c.stopErr = errors.New("pgserver: stop: server had exited")
			}
		default:
			if err := c.shutdown(); err != nil {
				c.stopErr = fmt.Errorf("pgserver: stop: %w", err)
			}
		}
		c.lock.Close()
		c.logger.Info("pgserver: stopped", "dir", c.dir)
	})
	return c.stopErr
}

// shutdown sends SIGINT (what `pg_ctl stop -m fast` sends) and waits; if the
// server hangs it escalates to SIGQUIT (immediate) and then SIGKILL.
func (c *Cluster) shutdown() error {
	if err := c.cmd.Process.Signal(os.Interrupt); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return err
	}
	select {
	case <-c.exited:
		return c.waitErr
	case <-time.After(stopTimeout):
	}
	c.kill()
	return fmt.Errorf("postgres did not shut down within %s; killed", stopTimeout)
}

// kill ends the child quickly: immediate shutdown, then SIGKILL.
func (c *Cluster) kill() {
	_ = c.cmd.Process.Signal(quitSignal)
	select {
	case <-c.exited:
		return
	case <-time.After(10 * time.Second):
	}
	_ = c.cmd.Process.Kill()
	<-c.exited
}

// FreePort asks the kernel for a free port on 127.0.0.1.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// childEnv is the caller's environment without PG* variables, which would
// otherwise steer initdb and postgres (PGDATA, PGPORT, ...).
func childEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PG") {
			env = append(env, kv)
		}
	}
	return env
}
