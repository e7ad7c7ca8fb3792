package pgserver

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// testSettings keep test clusters small.
var testSettings = map[string]string{"shared_buffers": "32MB", "max_connections": "50"}

// tempDir returns a fresh folder that the postgres OS user can traverse when
// the tests run as root (t.TempDir's folders are 0700).
func tempDir(tb testing.TB) string {
	tb.Helper()
	dir, err := os.MkdirTemp("", "pgserver-test-")
	if err != nil {
		tb.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

func startCluster(tb testing.TB, dir string) *Cluster {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c, err := Start(ctx, Options{Dir: dir, Fast: true, Settings: testSettings})
	if err != nil {
		tb.Fatalf("Start(%s): %v", dir, err)
	}
	tb.Cleanup(func() { c.Stop() })
	return c
}

func connect(tb testing.TB, url string) *pgx.Conn {
	tb.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		tb.Fatalf("connect: %v", err)
	}
	tb.Cleanup(func() { conn.Close(ctx) })
	return conn
}

func TestStartStopRestart(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(tempDir(t), "a", "pgdata") // parents are created
	c := startCluster(t, dir)
	if c.Dir() != dir {
		t.Errorf("Dir() = %q, want %q", c.Dir(), dir)
	}
	want := fmt.Sprintf("postgres://postgres@127.0.0.1:%d/app?sslmode=disable", c.Port())
	if got := c.URL("app"); got != want {
		t.Errorf("URL(app) = %q, want %q", got, want)
	}

	conn, err := pgx.Connect(ctx, c.URL("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, "CREATE TABLE kept (v text); INSERT INTO kept VALUES ('hello')"); err != nil {
		t.Fatal(err)
	}
	var addr string
	if err := conn.QueryRow(ctx, "SELECT inet_server_addr()::text").Scan(&addr); err != nil {
		t.Fatal(err)
	}
	if addr != "127.0.0.1/32" {
		t.Errorf("inet_server_addr() = %q, want 127.0.0.1/32", addr)
	}
	// Checkpoints by time rather than by 1GB of WAL (serverArgs).
	for name, want := range map[string]string{"max_wal_size": "8GB", "checkpoint_timeout": "15min"} {
		var got string
		if err := conn.QueryRow(ctx, "SELECT current_setting($1)", name).Scan(&got); err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Errorf("%s = %s, want %s", name, got, want)
		}
	}
	conn.Close(ctx)

	if err := c.Stop(); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if err := c.Stop(); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "postmaster.pid")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("postmaster.pid after Stop: %v, want not exist", err)
	}

	c2 := startCluster(t, dir)
	var v string
	if err := connect(t, c2.URL("postgres")).QueryRow(ctx, "SELECT v FROM kept").Scan(&v); err != nil {
		t.Fatalf("after restart: %v", err)
	}
	if v != "hello" {
		t.Errorf("after restart v = %q, want hello", v)
	}
	if fi, err := os.Stat(filepath.Join(dir, logName)); err != nil || fi.Size() == 0 {
		t.Errorf("server log: %v, want a non-empty file", err)
	}
}

func TestStartTwiceSameDir(t *testing.T) {
	dir := filepath.Join(tempDir(t), "pgdata")
	c := startCluster(t, dir)
	_, err := Start(context.Background(), Options{Dir: dir, Fast: true})
	if !errors.Is(err, ErrDirInUse) {
		t.Fatalf("second Start = %v, want ErrDirInUse", err)
	}
	if !strings.Contains(err.Error(), dir) {
		t.Errorf("error %q does not name the folder", err)
	}
	// The first server is unharmed.
	connect(t, c.URL("postgres"))
}

// TestStartReclaimsOrphan: a server whose owning process is gone (lock
// released without Stop) is stopped and replaced by the next Start.
func TestStartReclaimsOrphan(t *testing.T) {
	dir := filepath.Join(tempDir(t), "pgdata")
	c1 := startCluster(t, dir)
	c1.lock.Close() // what the kernel does when the process dies

	c2 := startCluster(t, dir)
	select {
	case <-c1.exited:
	case <-time.After(10 * time.Second):
		t.Fatal("orphaned server still running after second Start")
	}
	connect(t, c2.URL("postgres"))
}

// TestStartAfterParentKilled: when the process that started a server is
// killed, the server shuts down (parent-death signal) and the folder can be
// started again.
func TestStartAfterParentKilled(t *testing.T) {
	dir := filepath.Join(tempDir(t), "pgdata")
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperStartAndHang$")
	cmd.Env = append(os.Environ(), "PGSERVER_HELPER_DIR="+dir)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "port ") {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("helper said %q, %v", line, err)
	}
	port := strings.TrimSpace(strings.TrimPrefix(line, "port "))
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()

	deadline := time.Now().Add(20 * time.Second)
	for {
		_, err := os.Stat(filepath.Join(dir, "postmaster.pid"))
		if errors.Is(err, fs.ErrNotExist) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("server on port %s still running 20s after its parent was killed", port)
		}
		time.Sleep(20 * time.Millisecond)
	}
	connect(t, startCluster(t, dir).URL("postgres"))
}

// TestHelperStartAndHang is the child process of TestStartAfterParentKilled;
// it does nothing in a normal run.
func TestHelperStartAndHang(t *testing.T) {
	dir := os.Getenv("PGSERVER_HELPER_DIR")
	if dir == "" {
		return
	}
	c, err := Start(context.Background(), Options{Dir: dir, Fast: true, Settings: testSettings})
	if err != nil {
		t.Fatal(err)
	}
	fmt.Printf("port %d\n", c.Port())
	time.Sleep(time.Minute)
}

func TestEnsureDatabaseConcurrent(t *testing.T) {
	ctx := context.Background()
	c := startCluster(t, filepath.Join(tempDir(t), "pgdata"))
	url := c.URL("flywheel app") // a name that needs quoting

	for round := range 2 {
		var wg sync.WaitGroup
		errs := make([]error, 8)
		for i := range errs {
			wg.Go(func() { errs[i] = EnsureDatabase(ctx, url) })
		}
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Errorf("round %d: EnsureDatabase #%d: %v", round, i, err)
			}
		}
	}
	var db string
	if err := connect(t, url).QueryRow(ctx, "SELECT current_database()").Scan(&db); err != nil {
		t.Fatal(err)
	}
	if db != "flywheel app" {
		t.Errorf("current_database() = %q, want %q", db, "flywheel app")
	}

	if err := EnsureDatabase(ctx, "postgres://postgres@127.0.0.1:"+strconv.Itoa(c.Port())+"?sslmode=disable&password=s3cret"); err == nil {
		// pgx defaults the database to the user name, "postgres", which exists.
	} else if strings.Contains(err.Error(), "s3cret") {
		t.Errorf("error leaks the password: %v", err)
	}
	err := EnsureDatabase(ctx, "postgres://u:s3cret@127.0.0.1:1/x?sslmode=disable&connect_timeout=1")
	if err == nil || strings.Contains(err.Error(), "s3cret") {
		t.Errorf("EnsureDatabase(unreachable) = %v, want an error without the password", err)
	}
}

func TestStartInitCache(t *testing.T) {
	ctx := context.Background()
	base, cache := tempDir(t), filepath.Join(tempDir(t), "cache")
	for _, name := range []string{"first", "second"} { // second copies from the cache
		dir := filepath.Join(base, name)
		c, err := Start(ctx, Options{Dir: dir, Fast: true, Settings: testSettings, InitCache: cache})
		if err != nil {
			t.Fatalf("Start(%s): %v", name, err)
		}
		var n int
		err = connect(t, c.URL("postgres")).QueryRow(ctx, "SELECT count(*) FROM pg_database").Scan(&n)
		if err != nil || n != 3 {
			t.Errorf("%s: databases = %d, %v; want 3 (postgres, template0, template1)", name, n, err)
		}
		if err := c.Stop(); err != nil {
			t.Errorf("Stop(%s): %v", name, err)
		}
		fi, err := os.Stat(filepath.Join(dir, "base"))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o700 {
			t.Errorf("%s/base mode = %v, want 0700", name, fi.Mode().Perm())
		}
		if owner, _ := childOwner(); owner != nil {
			if uid, _ := fileUID(fi); uid != owner.uid {
				t.Errorf("%s/base owner = %d, want %d", name, uid, owner.uid)
			}
		}
	}
	entries, err := os.ReadDir(cache)
	if err != nil || len(entries) != 1 {
		t.Errorf("cache holds %v, %v; want one entry", entries, err)
	}
}

// TestStartPortTaken: a port served by another PostgreSQL (here the first
// cluster) is reported, not mistaken for the new server being ready.
func TestStartPortTaken(t *testing.T) {
	base := tempDir(t)
	first := startCluster(t, filepath.Join(base, "first"))
	_, err := Start(context.Background(), Options{Dir: filepath.Join(base, "second"), Port: first.Port(), Fast: true, Settings: testSettings})
	if !errors.Is(err, errPortInUse) {
		t.Fatalf("Start on a taken port = %v, want errPortInUse", err)
	}
	if !strings.Contains(err.Error(), "server log") {
		t.Errorf("error %q lacks the server log", err)
	}
	t.Log(err)
}

func TestStartRejectsForeignDir(t *testing.T) {
	dir := tempDir(t)
	if err := os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("mine"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Start(context.Background(), Options{Dir: dir})
	if err == nil || !strings.Contains(err.Error(), "no PostgreSQL cluster") {
		t.Fatalf("Start(non-empty folder) = %v, want a no-cluster error", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "notes.txt")); err != nil {
		t.Errorf("notes.txt: %v", err)
	}
}

func TestStartBadBinDir(t *testing.T) {
	t.Setenv("FLYWHEEL_PG_BINDIR", "/nonexistent")
	_, err := Start(context.Background(), Options{Dir: tempDir(t)})
	if err == nil || !strings.Contains(err.Error(), "FLYWHEEL_PG_BINDIR") {
		t.Fatalf("Start with a bad FLYWHEEL_PG_BINDIR = %v, want an error naming it", err)
	}
}

func TestCheckTraversable(t *testing.T) {
	base := tempDir(t)
	closed := filepath.Join(base, "closed")
	if err := os.MkdirAll(filepath.Join(closed, "inner"), 0o700); err != nil {
		t.Fatal(err)
	}
	stranger := &osUser{name: "stranger", uid: os.Getuid() + 4242, gid: os.Getgid() + 4242}
	stranger.gids = []int{stranger.gid}

	err := checkTraversable(filepath.Join(closed, "inner", "pgdata"), stranger)
	if err == nil || !strings.Contains(err.Error(), "folder "+closed+" ") || !strings.Contains(err.Error(), "FLYWHEEL_DATA_DIR") {
		t.Errorf("checkTraversable(under 0700) = %v, want an error naming %s and FLYWHEEL_DATA_DIR", err, closed)
	}
	if err := checkTraversable(filepath.Join(base, "pgdata"), stranger); err != nil {
		t.Errorf("checkTraversable(under 0755) = %v, want nil", err)
	}
}

func TestNewestFirst(t *testing.T) {
	got := newestFirst([]string{"/u/9.6/bin", "/u/16/bin", "/u/x/bin", "/u/15/bin"})
	want := []string{"/u/16/bin", "/u/15/bin", "/u/9.6/bin", "/u/x/bin"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("newestFirst = %v, want %v", got, want)
	}
}

func TestDefaultDir(t *testing.T) {
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	got, err := DefaultDir()
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(wd, ".flywheel", "pgdata"); got != want {
		t.Errorf("DefaultDir() = %q, want %q", got, want)
	}
}

func TestSharedBuffers(t *testing.T) {
	const gib = 1 << 30
	for _, c := range []struct {
		mem  uint64
		want string
	}{
		{0, "256MB"},           // unknown
		{256 << 20, "128MB"},   // a quarter would be 64MB: the floor
		{2 * gib, "512MB"},     // a quarter
		{24 * gib, "6144MB"},   // a quarter (the go-svc machine)
		{64 * gib, "8192MB"},   // the ceiling
		{1024 * gib, "8192MB"}, // the ceiling
	} {
		if got := sharedBuffers(c.mem); got != c.want {
			t.Errorf("sharedBuffers(%d) = %s, want %s", c.mem, got, c.want)
		}
	}
}

func TestServerArgsWAL(t *testing.T) {
	has := func(args []string, setting string) bool {
		for i := 1; i < len(args); i++ {
			if args[i-1] == "-c" && args[i] == setting {
				return true
			}
		}
		return false
	}
	for _, c := range []struct {
		fast, lz4, compressed bool
	}{
		{false, true, true},   // a durable cluster with lz4 compresses its WAL
		{false, false, false}, // PostgreSQL built without lz4 would refuse the setting
		{true, true, false},   // tests: no full-page writes to compress
	} {
		args := serverArgs("/d", 5432, Options{Fast: c.fast}, c.lz4)
		if got := has(args, "wal_compression=lz4"); got != c.compressed {
			t.Errorf("fast %v, lz4 %v: wal_compression=lz4 %v, want %v (%q)", c.fast, c.lz4, got, c.compressed, args)
		}
		if !has(args, "max_wal_size=8GB") || !has(args, "checkpoint_timeout=15min") {
			t.Errorf("fast %v: no max_wal_size=8GB and checkpoint_timeout=15min in %q", c.fast, args)
		}
	}
}

// The Debian PostgreSQL of the go-svc machines has lz4; when it is there,
// a durable cluster runs with its WAL compressed.
func TestStartCompressesWAL(t *testing.T) {
	bin, err := findBinDir(os.Getenv)
	if err != nil {
		t.Fatal(err)
	}
	if !builtWithLZ4(bin) {
		if os.Getenv("CI") != "" {
			t.Fatalf("the PostgreSQL in %s has no lz4 (or no pg_config), which CI's Debian PostgreSQL has", bin)
		}
		t.Skipf("the PostgreSQL in %s has no lz4 (or no pg_config)", bin)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c, err := Start(ctx, Options{Dir: filepath.Join(tempDir(t), "pgdata"), Settings: testSettings})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Stop() })
	var got string
	if err := connect(t, c.URL("postgres")).QueryRow(ctx, "SHOW wal_compression").Scan(&got); err != nil {
		t.Fatal(err)
	}
	if got != "lz4" {
		t.Errorf("wal_compression = %s, want lz4", got)
	}
}

// TestHugePages: HugePages tells whether the server's shared memory is in
// huge pages, for the cluster Start returns and for one attached to it.
func TestHugePages(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("HugetlbPages is read from /proc")
	}
	want := map[string]bool{"off": false} // huge_pages setting: HugePages' answer
	// With huge pages reserved and free (vm.nr_hugepages), "on" must get
	// them; a server that cannot have them would not start.
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for line := range strings.Lines(string(b)) {
			if rest, ok := strings.CutPrefix(line, "HugePages_Free:"); ok {
				if n, _ := strconv.Atoi(strings.TrimSpace(rest)); n >= 128 {
					want["on"] = true
				}
			}
		}
	}
	for setting, want := range want {
		t.Run(setting, func(t *testing.T) {
			settings := maps.Clone(testSettings)
			settings["huge_pages"] = setting
			c, err := Start(context.Background(), Options{Dir: filepath.Join(tempDir(t), "pgdata"), Fast: true, Settings: settings})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Stop()
			if on, known := c.HugePages(); on != want || !known {
				t.Errorf("HugePages() = %v, %v; want %v, true", on, known, want)
			}
			a, err := Attach(c.Dir())
			if err != nil {
				t.Fatal(err)
			}
			if on, known := a.HugePages(); on != want || !known {
				t.Errorf("attached: HugePages() = %v, %v; want %v, true", on, known, want)
			}
		})
	}
}
