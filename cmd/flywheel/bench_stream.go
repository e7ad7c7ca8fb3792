package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/flywheel-oss/flywheel"
)

// The target of issue 15: with 1,000 connected streams, a change reaches
// 99 % of them within 1 s.
const (
	streamTargetStreams = 1000
	streamP99Target     = time.Second
	streamWaitPerChange = 30 * time.Second
	// benchChildEnv makes a test binary run main (TestMain), so that the
	// bench's server subprocess works from `go test` too.
	benchChildEnv = "FLYWHEEL_BENCH_CHILD"
)

const benchStreamUsage = `usage: flywheel bench stream [--streams 1000] [--compare 100] [--changes 10] [--json]`

// streamOptions are the flags of `bench stream`.
type streamOptions struct {
	Streams int  `json:"streams"`
	Compare int  `json:"compare"`
	Changes int  `json:"changes"`
	JSON    bool `json:"-"`
}

// streamPhase is one measured phase: n streams, idle memory, changes.
type streamPhase struct {
	Streams             int     `json:"streams"`
	ConnectSeconds      float64 `json:"connect_seconds"`
	HeapBytesPerStream  float64 `json:"heap_inuse_bytes_per_stream"`
	StackBytesPerStream float64 `json:"stack_inuse_bytes_per_stream"`
	RSSBytesPerStream   float64 `json:"rss_bytes_per_stream"`
	GoroutinesPerStream float64 `json:"goroutines_per_stream"`
	Samples             int     `json:"samples"`
	Missed              int     `json:"missed"`
	P50ms               float64 `json:"p50_ms"`
	P99ms               float64 `json:"p99_ms"`
	Maxms               float64 `json:"max_ms"`
	// WorstChange99ms is, over the changes, the longest time until 99 %
	// of the streams had one.
	WorstChange99ms float64 `json:"worst_change_99pct_ms"`
}

type streamReport struct {
	Command    string        `json:"command"`
	Date       string        `json:"date"`
	Machine    benchMachine  `json:"machine"`
	Load       string        `json:"load"`
	FDLimit    uint64        `json:"fd_limit"`
	Options    streamOptions `json:"options"`
	Phases     []streamPhase `json:"phases"`
	P99Ratio   float64       `json:"p99_ratio,omitempty"`
	ShutdownMS float64       `json:"shutdown_ms"`
	AllEnded   bool          `json:"all_streams_ended_on_shutdown"`
	Pass       bool          `json:"pass"`
}

// runBenchStream runs `flywheel bench stream`: a flywheel server in a
// subprocess (so that its memory is its own), first --compare then
// --streams config streams held open by this process, --changes config
// changes through the admin API, and for each the time from sending the
// change until each stream has it. Then the server shuts down with the
// streams open, which must end them all.
func runBenchStream(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	o := streamOptions{}
	fs := newFlagSet("bench stream", stderr)
	fs.IntVar(&o.Streams, "streams", streamTargetStreams, "streams of the measured phase (1-20000)")
	fs.IntVar(&o.Compare, "compare", 100, "streams of the comparison phase run first (0 = none)")
	fs.IntVar(&o.Changes, "changes", 10, "config changes per phase (1-1000)")
	fs.BoolVar(&o.JSON, "json", false, "print one JSON document instead of a table")
	if err := fs.Parse(args); err != nil {
		return usageError{err.Error()}
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Sprintf("unexpected argument %q\n%s", fs.Arg(0), benchStreamUsage)}
	}
	var bad []string
	if o.Streams < 1 || o.Streams > 20000 {
		bad = append(bad, "--streams must be 1 to 20000")
	}
	if o.Compare < 0 || o.Compare > o.Streams {
		bad = append(bad, "--compare must be 0 to --streams")
	}
	if o.Changes < 1 || o.Changes > 1000 {
		bad = append(bad, "--changes must be 1 to 1000")
	}
	if len(bad) > 0 {
		return usageError{strings.Join(bad, "; ")}
	}
	// Each stream is a file descriptor here and one in the server; Go
	// raises the soft limit to the hard one at start.
	var lim syscall.Rlimit
	_ = syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim)
	if need := uint64(o.Streams) + 256; lim.Cur < need {
		return fmt.Errorf("bench stream: the open file limit is %d; %d streams need %d: raise it (ulimit -n %d)", lim.Cur, o.Streams, need, need)
	}
	cfg := loadConfig(getenv)
	if err := cfg.Validate(); err != nil {
		return err
	}
	progress := func(format string, a ...any) { fmt.Fprintf(stderr, "bench: "+format+"\n", a...) }
	env := &benchEnv{progress: progress}
	defer env.close()
	dbURL, err := env.openDatabase(ctx, cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		return err
	}
	for _, k := range []struct {
		dst   *string
		scope flywheel.Scope
	}{{&env.adminKey, flywheel.ScopeAdmin}, {&env.sdkKey, flywheel.ScopeSDK}} {
		if *k.dst, err = flywheel.NewKeySecret(k.scope); err != nil {
			return err
		}
	}
	srv, err := startServerProcess(ctx, dbURL, env.adminKey, env.sdkKey)
	if err != nil {
		return err
	}
	defer srv.kill()
	env.flywheelURL = srv.url
	progress("flywheel server process %d on %s; database: %s", srv.cmd.Process.Pid, srv.url, env.dbDesc)
	for _, path := range []string{"/v1/experiments", "/v1/experiments/stream-bench/start"} {
		body := ""
		if path == "/v1/experiments" {
			body = `{"key":"stream-bench","name":"stream bench","unit_type":"customer","traffic":0.01,"variants":[{"key":"a","weight":0.5},{"key":"b","weight":0.5}]}`
		}
		if code, got, err := env.call(ctx, srv.url, "POST", path, env.adminKey, body); err != nil || code >= 300 {
			return fmt.Errorf("bench stream: POST %s: %d %s: %v", path, code, got, err)
		}
	}

	rep := streamReport{Command: strings.TrimSpace("flywheel bench stream " + strings.Join(args, " ")),
		Date: time.Now().UTC().Format(time.RFC3339), Machine: currentMachine(), Load: loadAverage(), FDLimit: lim.Cur, Options: o}
	var last *streamSet
	for i, n := range []int{o.Compare, o.Streams} {
		if n == 0 {
			continue
		}
		progress("phase: %d streams, %d changes", n, o.Changes)
		ph, set, err := runStreamPhase(ctx, env, srv, n, o.Changes)
		if err != nil {
			if set != nil {
				set.close()
			}
			return err
		}
		rep.Phases = append(rep.Phases, ph)
		if i == 0 {
			set.close()
		} else {
			last = set
		}
	}
	// Graceful shutdown with every stream of the last phase open.
	start := time.Now()
	if err := srv.stop(); err != nil {
		progress("server shutdown: %v", err)
	}
	rep.ShutdownMS = ms(time.Since(start))
	rep.AllEnded = last.waitEnded(10 * time.Second)
	last.close()

	final := rep.Phases[len(rep.Phases)-1]
	if len(rep.Phases) == 2 && rep.Phases[0].P99ms > 0 {
		rep.P99Ratio = final.P99ms / rep.Phases[0].P99ms
	}
	rep.Pass = final.Missed == 0 && final.WorstChange99ms <= ms(streamP99Target) && rep.AllEnded
	if o.JSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	rep.print(stdout)
	return nil
}

func (r *streamReport) print(w io.Writer) {
	fmt.Fprintf(w, "command:  %s\ndate:     %s\nmachine:  %d CPUs (%s), GOMAXPROCS %d, %s, %s\nload:     %s\nfd limit: %d (each stream takes one descriptor in this process and one in the server)\n\n",
		r.Command, r.Date, r.Machine.CPUs, r.Machine.CPUModel, r.Machine.GOMAXPROCS, r.Machine.Go, r.Machine.OS, r.Load, r.FDLimit)
	fmt.Fprintf(w, "%8s %9s | %-52s | %-46s\n", "", "", "server memory per idle stream", "change -> stream (from sending the change)")
	fmt.Fprintf(w, "%8s %9s | %11s %11s %11s %14s | %8s %8s %8s %9s %7s\n", "streams", "connect", "heap inuse", "stack", "RSS", "goroutines", "p50", "p99", "max", "99% worst", "missed")
	for _, p := range r.Phases {
		fmt.Fprintf(w, "%8d %8.2fs | %7.1f KiB %7.1f KiB %7.1f KiB %14.2f | %6.1fms %6.1fms %6.1fms %7.1fms %7d\n", p.Streams, p.ConnectSeconds,
			p.HeapBytesPerStream/1024, p.StackBytesPerStream/1024, p.RSSBytesPerStream/1024, p.GoroutinesPerStream, p.P50ms, p.P99ms, p.Maxms, p.WorstChange99ms, p.Missed)
	}
	fmt.Fprintf(w, "(p50/p99/max over every (stream, change); \"99%% worst\": over the changes, the longest time until 99 %% of the streams had one)\n")
	if r.P99Ratio > 0 {
		fmt.Fprintf(w, "\np99 with %d streams / p99 with %d streams: %.2f\n", r.Phases[1].Streams, r.Phases[0].Streams, r.P99Ratio)
	}
	fmt.Fprintf(w, "graceful shutdown with %d open streams: %.0f ms; every stream ended: %v\n", r.Phases[len(r.Phases)-1].Streams, r.ShutdownMS, r.AllEnded)
	verdict := "PASS"
	if !r.Pass {
		verdict = "FAIL"
	}
	final := r.Phases[len(r.Phases)-1]
	fmt.Fprintf(w, "%s: %d streams, every change on 99 %% of them within %.1f ms (target <= %.0f ms), %d missed, every stream ended on shutdown: %v\n",
		verdict, final.Streams, final.WorstChange99ms, ms(streamP99Target), final.Missed, r.AllEnded)
}

// runStreamPhase opens n streams, measures the server's memory with them
// idle, then makes changes one at a time and times their arrival. The
// streams stay open for the caller.
func runStreamPhase(ctx context.Context, env *benchEnv, srv *serverProcess, n, changes int) (streamPhase, *streamSet, error) {
	ph := streamPhase{Streams: n}
	rev, err := currentRevision(ctx, env, srv.url)
	if err != nil {
		return ph, nil, err
	}
	time.Sleep(time.Second) // the previous phase's connections are gone
	before, err := srv.metrics(ctx)
	if err != nil {
		return ph, nil, err
	}
	start := time.Now()
	set, err := openStreams(ctx, srv.url, env.sdkKey, rev, n)
	if err != nil {
		return ph, set, err
	}
	ph.ConnectSeconds = time.Since(start).Seconds()
	time.Sleep(time.Second)
	after, err := srv.metrics(ctx)
	if err != nil {
		return ph, set, err
	}
	per := func(name string) float64 { return (after[name] - before[name]) / float64(n) }
	ph.HeapBytesPerStream = per("go_memstats_heap_inuse_bytes")
	ph.StackBytesPerStream = per("go_memstats_stack_inuse_bytes")
	ph.RSSBytesPerStream = per("process_resident_memory_bytes")
	ph.GoroutinesPerStream = per("go_goroutines")

	var lat []time.Duration
	for range changes {
		// Each change raises the running experiment's traffic a little: one
		// new revision, never refused.
		traffic := float64(phaseTraffic.Add(1)) / 10000
		sent := time.Now()
		if code, got, err := env.call(ctx, srv.url, "PATCH", "/v1/experiments/stream-bench", env.adminKey, fmt.Sprintf(`{"traffic":%g}`, traffic)); err != nil || code != 200 {
			return ph, set, fmt.Errorf("bench stream: change traffic to %g: %d %s: %v", traffic, code, got, err)
		}
		if rev, err = currentRevision(ctx, env, srv.url); err != nil {
			return ph, set, err
		}
		got, missed := set.waitFor(rev, sent, streamWaitPerChange)
		lat = append(lat, got...)
		ph.Missed += missed
		// The figure: the time by which 99 % of the streams had
		// this change (a stream that never got it counts as after).
		slices.Sort(got)
		if k := (99*n + 99) / 100; k <= len(got) {
			ph.WorstChange99ms = max(ph.WorstChange99ms, ms(got[k-1]))
		} else {
			ph.WorstChange99ms = math.Inf(1)
		}
		time.Sleep(100 * time.Millisecond)
	}
	slices.Sort(lat)
	ph.Samples = len(lat)
	if len(lat) > 0 {
		q := func(p float64) float64 { return ms(lat[min(len(lat)-1, int(p*float64(len(lat))))]) }
		ph.P50ms, ph.P99ms, ph.Maxms = q(0.50), q(0.99), ms(lat[len(lat)-1])
	}
	return ph, set, nil
}

// currentRevision reads the revision of GET /v1/sdk/config's ETag.
func currentRevision(ctx context.Context, env *benchEnv, base string) (int64, error) {
	code, body, err := env.call(ctx, base, "GET", "/v1/sdk/config", env.sdkKey, "")
	if err != nil || code != 200 {
		return 0, fmt.Errorf("bench stream: GET /v1/sdk/config: %d: %v", code, err)
	}
	var cfg struct {
		Revision int64 `json:"revision"`
	}
	if err := json.Unmarshal(body, &cfg); err != nil {
		return 0, fmt.Errorf("bench stream: config: %w", err)
	}
	return cfg.Revision, nil
}

// phaseTraffic counts the changes of a run, in basis points of traffic
// above 1 %: at most 2,000 changes stay under 21 %.
var phaseTraffic = func() *atomic.Int64 { var n atomic.Int64; n.Store(100); return &n }()

// streamSet is n open streams and when each saw each revision.
type streamSet struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
	mu     sync.Mutex
	cond   *sync.Cond
	// seen[i] is the newest revision stream i received and arrived[i] when.
	seen    []int64
	arrived [][]arrival
	ended   int
}

type arrival struct {
	rev int64
	at  time.Time
}

// openStreams opens n streams with Last-Event-ID rev (so they start idle)
// and returns once the server has answered each.
func openStreams(ctx context.Context, base, key string, rev int64, n int) (*streamSet, error) {
	ctx, cancel := context.WithCancel(ctx)
	s := &streamSet{cancel: cancel, seen: make([]int64, n), arrived: make([][]arrival, n)}
	s.cond = sync.NewCond(&s.mu)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: -1, DisableCompression: true}}
	errc := make(chan error, n)
	sem := make(chan struct{}, 32)
	for i := range n {
		sem <- struct{}{}
		req, _ := http.NewRequestWithContext(ctx, "GET", base+"/v1/sdk/stream", nil)
		req.Header.Set("Authorization", "Bearer "+key)
		req.Header.Set("Last-Event-ID", strconv.FormatInt(rev, 10))
		res, err := client.Do(req)
		<-sem
		if err == nil && res.StatusCode != 200 {
			b, _ := io.ReadAll(res.Body)
			res.Body.Close()
			err = fmt.Errorf("status %d: %s", res.StatusCode, b)
		}
		if err != nil {
			errc <- fmt.Errorf("bench stream: open stream %d: %w", i, err)
			break
		}
		s.wg.Add(1)
		go s.read(i, res.Body)
	}
	close(errc)
	if err := <-errc; err != nil {
		return s, err
	}
	return s, nil
}

// read records each id: line of stream i until it ends.
func (s *streamSet) read(i int, body io.ReadCloser) {
	defer s.wg.Done()
	defer body.Close()
	rd := bufio.NewReader(body)
	for {
		line, err := rd.ReadSlice('\n')
		if err != nil {
			s.mu.Lock()
			s.ended++
			s.cond.Broadcast()
			s.mu.Unlock()
			return
		}
		if id, ok := bytes.CutPrefix(line, []byte("id: ")); ok {
			rev, _ := strconv.ParseInt(string(bytes.TrimSpace(id)), 10, 64)
			now := time.Now()
			s.mu.Lock()
			s.seen[i] = rev
			s.arrived[i] = append(s.arrived[i], arrival{rev, now})
			s.cond.Broadcast()
			s.mu.Unlock()
		}
	}
}

// waitFor waits until every stream has rev or newer (at most wait) and
// returns each stream's delay from sent, and how many never got it.
func (s *streamSet) waitFor(rev int64, sent time.Time, wait time.Duration) ([]time.Duration, int) {
	deadline := time.AfterFunc(wait, func() { s.mu.Lock(); s.cond.Broadcast(); s.mu.Unlock() })
	defer deadline.Stop()
	end := time.Now().Add(wait)
	s.mu.Lock()
	defer s.mu.Unlock()
	for time.Now().Before(end) && slices.ContainsFunc(s.seen, func(r int64) bool { return r < rev }) {
		s.cond.Wait()
	}
	var out []time.Duration
	missed := 0
	for i := range s.seen {
		j := slices.IndexFunc(s.arrived[i], func(a arrival) bool { return a.rev >= rev })
		if j < 0 {
			missed++
			continue
		}
		out = append(out, s.arrived[i][j].at.Sub(sent))
	}
	return out, missed
}

// waitEnded waits until every stream ended (the server closed it).
func (s *streamSet) waitEnded(wait time.Duration) bool {
	deadline := time.AfterFunc(wait, func() { s.mu.Lock(); s.cond.Broadcast(); s.mu.Unlock() })
	defer deadline.Stop()
	end := time.Now().Add(wait)
	s.mu.Lock()
	defer s.mu.Unlock()
	for s.ended < len(s.seen) && time.Now().Before(end) {
		s.cond.Wait()
	}
	return s.ended == len(s.seen)
}

// close ends every stream from this side and waits for the readers.
func (s *streamSet) close() {
	s.cancel()
	s.wg.Wait()
}

// serverProcess is `flywheel serve` in a subprocess.
type serverProcess struct {
	cmd    *exec.Cmd
	url    string
	done   chan error
	stderr *lockedWriter
}

// startServerProcess runs this executable's serve on a free local port
// and waits until it is ready.
func startServerProcess(ctx context.Context, dbURL, adminKey, sdkKey string) (*serverProcess, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	addr := ln.Addr().String()
	ln.Close()
	p := &serverProcess{url: "http://" + addr, done: make(chan error, 1), stderr: &lockedWriter{w: &bytes.Buffer{}}}
	p.cmd = exec.Command(exe, "serve", "--addr", addr)
	p.cmd.Env = append(os.Environ(), "DATABASE_URL="+dbURL, "FLYWHEEL_INIT_ADMIN_KEY="+adminKey, "FLYWHEEL_INIT_SDK_KEY="+sdkKey,
		"FLYWHEEL_LOG_LEVEL=error", benchChildEnv+"=1")
	p.cmd.Stderr = p.stderr
	if err := p.cmd.Start(); err != nil {
		return nil, err
	}
	go func() { p.done <- p.cmd.Wait() }()
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		if res, err := client.Get(p.url + "/readyz"); err == nil {
			res.Body.Close()
			if res.StatusCode == 200 {
				return p, nil
			}
		}
		select {
		case err := <-p.done:
			p.done <- err
			return nil, fmt.Errorf("bench stream: the server exited: %v: %s", err, p.stderrTail())
		case <-ctx.Done():
			p.kill()
			return nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			p.kill()
			return nil, errors.New("bench stream: the server was not ready within 2 minutes: " + p.stderrTail())
		}
	}
}

func (p *serverProcess) stderrTail() string {
	p.stderr.mu.Lock()
	defer p.stderr.mu.Unlock()
	b := p.stderr.w.(*bytes.Buffer).Bytes()
	return string(b[max(0, len(b)-2000):])
}

// metrics reads the server's Prometheus gauges (unlabelled ones).
func (p *serverProcess) metrics(ctx context.Context) (map[string]float64, error) {
	req, _ := http.NewRequestWithContext(ctx, "GET", p.url+"/metrics", nil)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("bench stream: /metrics: %w", err)
	}
	defer res.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(res.Body)
	for sc.Scan() {
		name, value, ok := strings.Cut(sc.Text(), " ")
		if !ok || strings.HasPrefix(name, "#") || strings.Contains(name, "{") {
			continue
		}
		if v, err := strconv.ParseFloat(value, 64); err == nil {
			out[name] = v
		}
	}
	return out, sc.Err()
}

// stop shuts the server down gracefully (SIGINT) and waits for it.
func (p *serverProcess) stop() error {
	_ = p.cmd.Process.Signal(os.Interrupt)
	select {
	case err := <-p.done:
		p.done <- err
		return err
	case <-time.After(time.Minute):
		p.kill()
		return errors.New("the server did not stop within a minute")
	}
}

// kill ends the server if it still runs.
func (p *serverProcess) kill() {
	select {
	case err := <-p.done:
		p.done <- err
	default:
		_ = p.cmd.Process.Kill()
		p.done <- <-p.done
	}
}

// lockedWriter serialises writes to w.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}

// loadAverage is /proc/loadavg's first three fields ("unknown" elsewhere).
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return "load average " + strings.Join(f[:3], ", ") + " (1, 5, 15 min)"
}
