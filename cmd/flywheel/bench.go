package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	neturl "net/url"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/jackc/pgx/v5"

	"github.com/flywheel-oss/flywheel"
	"github.com/flywheel-oss/flywheel/internal/loadgen"
	"github.com/flywheel-oss/flywheel/internal/pgserver"
)

// The targets of the issue: flywheel's POST /v1/assign must reach this
// share of a bare gin handler's requests/s, with at most this multiple of
// its p99 latency, measured in the same run.
const (
	benchRPSTarget = 0.60
	benchP99Target = 1.5
)

const benchUsage = `usage: flywheel bench assign [--connections 64] [--duration 10s] [--rounds 3] [--experiments 10]
                             [--warmup 1s] [--json] [--cpuprofile PREFIX]`

// benchOptions are the flags of `bench assign`.
type benchOptions struct {
	Connections int           `json:"connections"`
	Duration    time.Duration `json:"duration_ns"`
	Warmup      time.Duration `json:"warmup_ns"`
	Rounds      int           `json:"rounds"`
	Experiments int           `json:"experiments"`
	JSON        bool          `json:"-"`
	CPUProfile  string        `json:"-"`
}

// runBench runs `flywheel bench assign`: flywheel's POST /v1/assign against
// a bare gin JSON handler of the same request and response sizes, both in
// this process on 127.0.0.1, in alternating runs (bare, flywheel, bare,
// flywheel, ...) so that a noisy machine affects both alike. It prints a
// table per run and the ratios the issue asks for. The database is a
// scratch one: a new database on DATABASE_URL's server, or an embedded
// cluster in a temporary folder, removed afterwards.
func runBench(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "ingest" {
		return runBenchIngest(ctx, args[1:], getenv, stdout, stderr)
	}
	if len(args) > 0 && args[0] == "results" {
		return runBenchResults(ctx, args[1:], getenv, stdout, stderr)
	}
	if len(args) > 0 && args[0] == "freshness" {
		return runBenchFreshness(ctx, args[1:], getenv, stdout, stderr)
	}
	if len(args) > 0 && args[0] == "stream" {
		return runBenchStream(ctx, args[1:], getenv, stdout, stderr)
	}
	if len(args) > 0 && args[0] == "assignments" {
		return runBenchAssignments(ctx, args[1:], getenv, stdout, stderr)
	}
	if len(args) == 0 || args[0] != "assign" {
		return usageError{benchUsage + "\n" + benchIngestUsage + "\n" + benchResultsUsage + "\n" + benchFreshnessUsage + "\n" + benchStreamUsage + "\n" + benchAssignmentsUsage}
	}
	var o benchOptions
	fs := newFlagSet("bench assign", stderr)
	fs.IntVar(&o.Connections, "connections", 64, "concurrent keep-alive connections (1-4096)")
	fs.DurationVar(&o.Duration, "duration", 10*time.Second, "measured time of each run")
	fs.DurationVar(&o.Warmup, "warmup", time.Second, "unmeasured time before each run")
	fs.IntVar(&o.Rounds, "rounds", 3, "rounds; each runs bare then flywheel (1-100)")
	fs.IntVar(&o.Experiments, "experiments", 10, "running experiments to create; requests ask for the one with a targeting rule (1-500)")
	fs.BoolVar(&o.JSON, "json", false, "print one JSON document instead of tables")
	fs.StringVar(&o.CPUProfile, "cpuprofile", "", "write a CPU profile of each run to PREFIX-<target>-r<round>.pprof (the generator is labelled loadgen=worker)")
	if err := fs.Parse(args[1:]); err != nil {
		return usageError{err.Error()}
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Sprintf("unexpected argument %q\n%s", fs.Arg(0), benchUsage)}
	}
	var bad []string
	if o.Connections < 1 || o.Connections > 4096 {
		bad = append(bad, "--connections must be 1 to 4096")
	}
	if o.Duration <= 0 || o.Duration > time.Hour || o.Warmup < 0 || o.Warmup > time.Hour {
		bad = append(bad, "--duration must be in (0, 1h] and --warmup in [0, 1h]")
	}
	if o.Rounds < 1 || o.Rounds > 100 {
		bad = append(bad, "--rounds must be 1 to 100")
	}
	if o.Experiments < 1 || o.Experiments > 500 {
		bad = append(bad, "--experiments must be 1 to 500")
	}
	if len(bad) > 0 {
		return usageError{strings.Join(bad, "; ")}
	}
	cfg := loadConfig(getenv)
	if err := cfg.Validate(); err != nil {
		return err
	}
	progress := func(format string, a ...any) { fmt.Fprintf(stderr, "bench: "+format+"\n", a...) }

	env, err := startBenchEnv(ctx, cfg, o, getenv, progress)
	if env != nil {
		defer env.close()
	}
	if err != nil {
		return err
	}

	rep := benchReport{
		Command:  "flywheel bench assign " + strings.Join(args[1:], " "),
		Date:     time.Now().UTC().Format(time.RFC3339),
		Machine:  currentMachine(),
		Options:  o,
		Database: env.dbDesc,
		LogLevel: cfg.LogLevel,
		Request:  env.request,
		Response: env.response,
	}
	if !o.JSON {
		rep.printHeader(stdout)
	}
	hdr := http.Header{
		"Content-Type":  {"application/json"},
		"Authorization": {"Bearer " + env.sdkKey},
	}
	targets := []struct{ name, url string }{{"bare", env.bareURL + "/v1/assign"}, {"flywheel", env.flywheelURL + "/v1/assign"}}
	for round := 1; round <= o.Rounds; round++ {
		for _, tg := range targets {
			if o.JSON {
				progress("round %d/%d: %s, %d connections, %v + %v", round, o.Rounds, tg.name, o.Connections, o.Warmup, o.Duration)
			}
			runtime.GC() // each run starts from a collected heap
			stopProfile, err := startProfile(o.CPUProfile, tg.name, round)
			if err != nil {
				return err
			}
			res, err := loadgen.Run(ctx, loadgen.Config{
				URL: tg.url, Header: hdr, Body: env.body, IDPlaceholder: unitPlaceholder,
				Connections: o.Connections, Warmup: o.Warmup, Duration: o.Duration,
			})
			stopProfile()
			if err != nil {
				return fmt.Errorf("bench: round %d %s: %w", round, tg.name, err)
			}
			run := newBenchRun(round, tg.name, res)
			rep.Runs = append(rep.Runs, run)
			if !o.JSON {
				rep.printRun(stdout, run)
			}
		}
	}
	rep.summarize()
	if o.JSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	rep.printSummary(stdout)
	return nil
}

// unitPlaceholder is replaced in each request by a unit id unique to it.
const unitPlaceholder = "$UNIT"

// benchEnv is what the runs target: the two servers and the database under
// flywheel; close releases all of it.
type benchEnv struct {
	dbDesc               string
	dbURL                string
	flywheelURL, bareURL string
	adminKey, sdkKey     string
	body                 []byte
	request              benchRequest
	response             benchResponse
	closers              []func()
	progress             func(format string, a ...any)
	serverLog            *slog.Logger // flywheel's log; nil: warnings to stderr
}

type benchRequest struct {
	Bytes      int    `json:"bytes"`
	Experiment string `json:"experiment"`
	Targeting  string `json:"targeting"`
}

type benchResponse struct {
	FlywheelBytes int `json:"flywheel_bytes"`
	BareBytes     int `json:"bare_bytes"`
}

func (e *benchEnv) close() {
	for i := len(e.closers) - 1; i >= 0; i-- {
		e.closers[i]()
	}
}

// startFlywheelEnv gets a scratch database and starts flywheel on it in
// this process with a fresh admin and sdk key. On error the returned env
// (if not nil) must still be closed.
func startFlywheelEnv(ctx context.Context, cfg config, getenv func(string) string, progress func(string, ...any)) (*benchEnv, error) {
	env := &benchEnv{progress: progress}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	dbURL, err := env.openDatabase(ctx, cfg, log)
	env.dbURL = dbURL
	if err != nil {
		return env, err
	}
	progress("database: %s", env.dbDesc)
	for _, k := range []struct {
		dst   *string
		scope flywheel.Scope
	}{{&env.adminKey, flywheel.ScopeAdmin}, {&env.sdkKey, flywheel.ScopeSDK}} {
		if *k.dst, err = flywheel.NewKeySecret(k.scope); err != nil {
			return env, err
		}
	}
	srvEnv := func(k string) string {
		switch k {
		case "DATABASE_URL":
			return dbURL
		case "FLYWHEEL_INIT_ADMIN_KEY":
			return env.adminKey
		case "FLYWHEEL_INIT_SDK_KEY":
			return env.sdkKey
		case "FLYWHEEL_ADDR", "FLYWHEEL_DATA_DIR":
			return ""
		}
		return getenv(k)
	}
	// flywheel logs one line per request as in production (the format cost
	// is paid); the lines are discarded rather than flooding the terminal.
	sctx, stopServer := context.WithCancel(ctx)
	addrc, done := make(chan string, 1), make(chan error, 1)
	go func() {
		done <- runServe(sctx, []string{"--addr", "127.0.0.1:0"}, srvEnv, io.Discard, io.Discard, func(a string) { addrc <- a })
	}()
	select {
	case a := <-addrc:
		env.flywheelURL = "http://" + a
		env.closers = append(env.closers, func() {
			stopServer()
			if err := <-done; err != nil {
				progress("flywheel server: %v", err)
			}
		})
	case err := <-done:
		stopServer()
		return env, fmt.Errorf("bench: flywheel server: %w", err)
	case <-ctx.Done():
		stopServer()
		<-done
		return env, ctx.Err()
	}
	progress("flywheel listening on %s", env.flywheelURL)
	return env, nil
}

// startBenchEnv starts flywheel (startFlywheelEnv), defines the
// experiments and starts the bare server. On error the returned env (if
// not nil) must still be closed.
func startBenchEnv(ctx context.Context, cfg config, o benchOptions, getenv func(string) string, progress func(string, ...any)) (*benchEnv, error) {
	env, err := startFlywheelEnv(ctx, cfg, getenv, progress)
	if err != nil {
		return env, err
	}

	answer, err := env.defineExperiments(ctx, o.Experiments)
	if err != nil {
		return env, err
	}
	bare, stopBare, err := startBareServer(answer)
	if err != nil {
		return env, err
	}
	env.bareURL = bare
	env.closers = append(env.closers, stopBare)
	// Check the bare server takes the same request and answers as much.
	code, got, err := env.call(ctx, env.bareURL, "POST", "/v1/assign", env.sdkKey, string(bytes.Replace(env.body, []byte(unitPlaceholder), []byte("probe-bare"), 1)))
	if err != nil || code != http.StatusOK {
		return env, fmt.Errorf("bench: bare server probe: status %d: %v", code, err)
	}
	env.response.BareBytes = len(got)
	progress("bare gin server listening on %s", env.bareURL)
	return env, nil
}

// openDatabase provides flywheel's database: a scratch database on
// DATABASE_URL's server (so the bench never writes to the real one), or an
// embedded cluster in a new temporary folder. Both go away in close.
func (e *benchEnv) openDatabase(ctx context.Context, cfg config, log *slog.Logger) (string, error) {
	if cfg.DatabaseURL != "" {
		u, err := neturl.Parse(cfg.DatabaseURL)
		if err != nil {
			return "", errors.New("bench: cannot parse DATABASE_URL")
		}
		name := "flywheel_bench_" + randomHex(6)
		serverURL := cfg.DatabaseURL
		u.Path = "/" + name
		cfg.DatabaseURL = u.String()
		url, stop, err := openDatabase(ctx, cfg, log)
		e.closers = append(e.closers, func() {
			if err := dropDatabase(serverURL, name); err != nil {
				e.progress("drop scratch database %s: %v", name, err)
			}
		})
		if err != nil {
			return "", err
		}
		e.closers = append(e.closers, stop)
		e.dbDesc = "scratch database " + name + " on DATABASE_URL's server (dropped afterwards)"
		return url, nil
	}
	// As root the cluster runs as the postgres user, who must reach the
	// folder: MkdirTemp makes it 0700.
	dir, err := os.MkdirTemp("", "flywheel-bench-")
	if err != nil {
		return "", err
	}
	e.closers = append(e.closers, func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		return "", err
	}
	cfg.DataDir = filepath.Join(dir, "pgdata")
	url, stop, err := openDatabase(ctx, cfg, log)
	if err != nil {
		return "", err
	}
	e.closers = append(e.closers, stop)
	e.dbDesc = "embedded cluster in " + cfg.DataDir + " (removed afterwards)" + hugePagesDesc(cfg.DataDir)
	return url, nil
}

// dropDatabase drops name, with any sessions left, through serverURL's
// database or the maintenance ones.
func dropDatabase(serverURL, name string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cc, err := pgx.ParseConfig(serverURL)
	if err != nil {
		return errors.New("cannot parse DATABASE_URL")
	}
	for _, db := range []string{cc.Database, "postgres", "template1"} {
		c := cc.Copy()
		c.Database = db
		conn, cerr := pgx.ConnectConfig(ctx, c)
		if cerr != nil {
			err = cerr
			continue
		}
		defer conn.Close(context.Background())
		_, err = conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)")
		return err
	}
	return err
}

// defineExperiments creates a metric and n running experiments through the
// API. bench-00 has a targeting rule and is the one every request asks for;
// the others make the configuration realistic in size. It returns an
// answer of flywheel for an enrolled unit, which the bare server repeats.
func (e *benchEnv) defineExperiments(ctx context.Context, n int) ([]byte, error) {
	const targeting = `{"country":{"$in":["FR","BE"]}}`
	if code, got, err := e.call(ctx, e.flywheelURL, "POST", "/v1/metrics", e.adminKey,
		`{"key":"bench_purchase","event":"purchase","type":"conversion"}`); err != nil || code != http.StatusCreated {
		return nil, fmt.Errorf("bench: create metric: status %d %s: %v", code, got, err)
	}
	for i := range n {
		key := fmt.Sprintf("bench-%02d", i)
		rule := ""
		if i == 0 {
			rule = `,"targeting":` + targeting
		}
		body := `{"key":"` + key + `","name":"Bench ` + key + `","unit_type":"customer",` +
			`"variants":[{"key":"control","weight":0.5},{"key":"treatment","weight":0.5,"payload":{"color":"#0a0"}}],` +
			`"metrics":{"primary":["bench_purchase"]}` + rule + `}`
		if code, got, err := e.call(ctx, e.flywheelURL, "POST", "/v1/experiments", e.adminKey, body); err != nil || code != http.StatusCreated {
			return nil, fmt.Errorf("bench: create experiment %s: status %d %s: %v", key, code, got, err)
		}
		if code, got, err := e.call(ctx, e.flywheelURL, "POST", "/v1/experiments/"+key+"/start", e.adminKey, ""); err != nil || code != http.StatusOK {
			return nil, fmt.Errorf("bench: start experiment %s: status %d %s: %v", key, code, got, err)
		}
	}
	e.body = []byte(`{"unit_type":"customer","unit_id":"` + unitPlaceholder + `","attributes":{"country":"FR","plan":"pro"},"experiments":["bench-00"]}`)
	e.request = benchRequest{Bytes: len(e.body) - len(unitPlaceholder) + len("w12-345678"), Experiment: "bench-00", Targeting: targeting}
	// Find a unit in the treatment (the larger answer, with its payload).
	for i := range 200 {
		body := bytes.Replace(e.body, []byte(unitPlaceholder), fmt.Appendf(nil, "probe-%d", i), 1)
		code, got, err := e.call(ctx, e.flywheelURL, "POST", "/v1/assign", e.sdkKey, string(body))
		if err != nil || code != http.StatusOK {
			return nil, fmt.Errorf("bench: probe assign: status %d %s: %v", code, got, err)
		}
		var res struct {
			Assignments []struct {
				Variant string `json:"variant"`
				Reason  string `json:"reason"`
			} `json:"assignments"`
		}
		if err := json.Unmarshal(got, &res); err != nil || len(res.Assignments) != 1 {
			return nil, fmt.Errorf("bench: probe assign: unexpected answer %s", got)
		}
		if res.Assignments[0].Reason != "bucket" {
			return nil, fmt.Errorf("bench: probe assign: reason %q, want the unit enrolled (bucket)", res.Assignments[0].Reason)
		}
		if res.Assignments[0].Variant == "treatment" {
			e.response.FlywheelBytes = len(got)
			return got, nil
		}
	}
	return nil, errors.New("bench: no probe unit landed in the treatment")
}

// call makes one setup request and returns the status and body.
func (e *benchEnv) call(ctx context.Context, base, method, path, key, body string) (int, []byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, base+path, strings.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer res.Body.Close()
	got, err := io.ReadAll(io.LimitReader(res.Body, 1<<20))
	return res.StatusCode, got, err
}

// startBareServer serves the ceiling: gin with no middleware, whose POST
// /v1/assign decodes the JSON body into a map and encodes answer (decoded
// once, so each request pays a real JSON encoding of the same size).
func startBareServer(answer []byte) (string, func(), error) {
	var v any
	if err := json.Unmarshal(answer, &v); err != nil {
		return "", nil, fmt.Errorf("bench: bare answer: %w", err)
	}
	gin.SetMode(gin.ReleaseMode)
	e := gin.New()
	e.POST("/v1/assign", func(c *gin.Context) {
		var m map[string]any
		if err := c.ShouldBindJSON(&m); err != nil {
			c.AbortWithStatus(http.StatusBadRequest)
			return
		}
		c.JSON(http.StatusOK, v)
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, fmt.Errorf("bench: bare server: %w", err)
	}
	// The same server settings as flywheel serve.
	srv := &http.Server{Handler: e, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 30 * time.Second,
		WriteTimeout: 60 * time.Second, IdleTimeout: 120 * time.Second, MaxHeaderBytes: 64 << 10}
	go srv.Serve(ln)
	stop := func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	}
	return "http://" + ln.Addr().String(), stop, nil
}

// startProfile starts a CPU profile of one run when prefix is set.
func startProfile(prefix, target string, round int) (func(), error) {
	if prefix == "" {
		return func() {}, nil
	}
	f, err := os.Create(fmt.Sprintf("%s-%s-r%d.pprof", prefix, target, round))
	if err != nil {
		return nil, fmt.Errorf("bench: cpuprofile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("bench: cpuprofile: %w", err)
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}, nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// hugePagesDesc says whether the embedded cluster in dir runs on huge
// pages, which decide how long a new connection's first queries take
// (pgserver's Cluster.HugePages); "" when unknown.
func hugePagesDesc(dir string) string {
	c, err := pgserver.Attach(dir)
	if err != nil {
		return ""
	}
	switch on, ok := c.HugePages(); {
	case !ok:
		return ""
	case !on:
		return ", no huge pages (see the README's \"Huge pages\")"
	}
	return ", shared memory in huge pages"
}
