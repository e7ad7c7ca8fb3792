package main

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// The targets of the issue for ingestion: durable events/s through
// POST /v1/events at least half of a bare pgx COPY of the same rows into
// the same table, and at least 50,000 events/s.
const (
	ingestRatioTarget = 0.50
	ingestRateTarget  = 50_000
)

const benchIngestUsage = `usage: flywheel bench ingest [--connections 8] [--ceiling keyed|events] [--batch 1000] [--duration 10s] [--rounds 3] [--warmup 2s] [--targets copy,flywheel-v7,flywheel-v4,storage] [--json] [--cpuprofile PREFIX]`

// ingestOptions are the flags of `bench ingest`.
type ingestOptions struct {
	Connections int
	Ceiling     string
	Batch       int
	Duration    time.Duration
	Warmup      time.Duration
	Rounds      int
	JSON        bool
	CPUProfile  string
	Targets     []string
}

// ingestTargets are what `bench ingest` can measure, in the order of a round.
var ingestTargets = []string{"copy", "flywheel-v7", "flywheel-v4"}

// ingestTargetsAll are the targets --targets may name: the default ones,
// and storage (copyStorage), the floor of the design's own storage.
var ingestTargetsAll = append(slices.Clone(ingestTargets), "storage")

// ingestRun is one measured run of one target.
type ingestRun struct {
	Round     int     `json:"round"`
	Target    string  `json:"target"` // copy (the ceiling), flywheel-v7, flywheel-v4
	Batches   int     `json:"batches"`
	Events    int64   `json:"events"`
	EventsPS  float64 `json:"events_per_second"`
	P50ms     float64 `json:"p50_ms"`
	P99ms     float64 `json:"p99_ms"`
	Failed    int     `json:"failed"`
	FirstFail string  `json:"first_failure,omitempty"`
	// Waits counts, over samples of pg_stat_activity every 20 ms during
	// the run, the active client backends by what they were doing: a wait
	// event ("IO:WalSync", "Lock:transactionid", ...) or "CPU" (none).
	Waits map[string]int `json:"waits"`
	// WALPerEvent is the WAL the whole server wrote during the run
	// (warm-up included, every backend: ingestion, the aggregator) over
	// the events committed in that time, in bytes.
	WALPerEvent float64 `json:"wal_bytes_per_event"`
	allEvents   int64   // committed, warm-up included
	// CPUPerEvent is the machine's busy CPU time (every process: server,
	// clients, PostgreSQL; /proc/stat, so Linux only) during the measured
	// time over the events committed in it, in microseconds: unlike
	// events/s, it does not move when the hypervisor takes cores away.
	// CPUBusy is the share of the machine's CPU time that was busy.
	CPUPerEvent float64 `json:"cpu_us_per_event,omitempty"`
	CPUBusy     float64 `json:"cpu_busy,omitempty"`
}

// machineCPU is the machine's CPU time so far, in seconds, from /proc/stat.
type machineCPU struct {
	busy, idle float64
	ok         bool
}

// readMachineCPU reads /proc/stat's first line: user nice system idle
// iowait irq softirq steal ...; idle and iowait are idle, steal (time the
// hypervisor gave to others) is neither.
func readMachineCPU() machineCPU {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return machineCPU{}
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 8 || f[0] != "cpu" {
		return machineCPU{}
	}
	var v [7]float64
	for i := range v {
		if v[i], err = strconv.ParseFloat(f[i+1], 64); err != nil {
			return machineCPU{}
		}
	}
	const hz = 100 // USER_HZ, the unit of /proc/stat on every Linux
	return machineCPU{busy: (v[0] + v[1] + v[2] + v[5] + v[6]) / hz, idle: (v[3] + v[4]) / hz, ok: true}
}

// countIDs is the number of rows of event_ids, or -1.
func countIDs(ctx context.Context, pool *pgxpool.Pool) int64 {
	return queryInt64(ctx, pool, `SELECT count(*) FROM event_ids`)
}

// walLSN is the server's current WAL position in bytes, or -1.
func walLSN(ctx context.Context, pool *pgxpool.Pool) int64 {
	return queryInt64(ctx, pool, `SELECT pg_current_wal_lsn() - '0/0'`)
}

// queryInt64 runs a query of one integer, and returns it, or -1 if the
// query failed.
func queryInt64(ctx context.Context, pool *pgxpool.Pool, sql string) int64 {
	var n int64
	if err := pool.QueryRow(ctx, sql).Scan(&n); err != nil {
		return -1
	}
	return n
}

// runBenchIngest runs `flywheel bench ingest`: durable events/s through
// POST /v1/events (1,000-event batches from concurrent clients on
// loopback) against the ceiling, a bare pgx COPY of the same rows into the
// same events table from as many connections, each batch its own committed
// transaction. Runs alternate (copy, flywheel v7, flywheel v4) so that a
// noisy machine affects all alike. v4 runs measure what random ids cost
// the id index.
func runBenchIngest(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	var o ingestOptions
	fs := newFlagSet("bench ingest", stderr)
	fs.IntVar(&o.Connections, "connections", 8, "concurrent clients, and COPY connections for the ceiling (1-256)")
	fs.StringVar(&o.Ceiling, "ceiling", "keyed", "the ceiling's table: keyed (events' columns, primary key id, as issue 13 measures) or events (the events table itself)")
	fs.IntVar(&o.Batch, "batch", 1000, "events per request (1-10000)")
	fs.DurationVar(&o.Duration, "duration", 10*time.Second, "measured time of each run")
	fs.DurationVar(&o.Warmup, "warmup", 2*time.Second, "unmeasured time before each run")
	fs.IntVar(&o.Rounds, "rounds", 3, "rounds of copy, flywheel-v7, flywheel-v4 (1-100)")
	fs.BoolVar(&o.JSON, "json", false, "print one JSON document instead of tables")
	fs.StringVar(&o.CPUProfile, "cpuprofile", "", "write a CPU profile of each run to PREFIX-<target>-r<round>.pprof")
	targets := fs.String("targets", strings.Join(ingestTargets, ","), "what each round runs, in order: copy (the ceiling), flywheel-v7, flywheel-v4, storage (each event's row in events and its id in event_ids, COPYed: the design's storage alone)")
	if err := fs.Parse(args); err != nil {
		return usageError{err.Error()}
	}
	for _, t := range strings.Split(*targets, ",") {
		if t = strings.TrimSpace(t); t == "" {
			continue
		}
		if !slices.Contains(ingestTargetsAll, t) || slices.Contains(o.Targets, t) {
			return usageError{fmt.Sprintf("--targets %q: want some of %s, each once\n%s", *targets, strings.Join(ingestTargetsAll, ", "), benchIngestUsage)}
		}
		o.Targets = append(o.Targets, t)
	}
	switch {
	case len(o.Targets) == 0:
		return usageError{fmt.Sprintf("--targets: nothing to run\n%s", benchIngestUsage)}
	case fs.NArg() > 0:
		return usageError{fmt.Sprintf("unexpected argument %q\n%s", fs.Arg(0), benchIngestUsage)}
	case o.Ceiling != "keyed" && o.Ceiling != "events":
		return usageError{fmt.Sprintf("--ceiling %q: want keyed or events\n%s", o.Ceiling, benchIngestUsage)}
	case o.Connections < 1 || o.Connections > 256, o.Batch < 1 || o.Batch > 10000, o.Rounds < 1 || o.Rounds > 100,
		o.Duration <= 0 || o.Duration > time.Hour, o.Warmup < 0 || o.Warmup > time.Hour:
		return usageError{benchIngestUsage}
	}
	cfg := loadConfig(getenv)
	if err := cfg.Validate(); err != nil {
		return err
	}
	progress := func(format string, a ...any) { fmt.Fprintf(stderr, "bench: "+format+"\n", a...) }
	env, err := startFlywheelEnv(ctx, cfg, getenv, progress)
	if env != nil {
		defer env.close()
	}
	if err != nil {
		return err
	}
	if code, body, err := env.call(ctx, env.flywheelURL, "POST", "/v1/experiments", env.adminKey,
		`{"key":"bench-ingest","unit_type":"customer","variants":[{"key":"control","weight":0.5},{"key":"treatment","weight":0.5}]}`); err != nil || code != http.StatusCreated {
		return fmt.Errorf("bench: create experiment: %d %s %v", code, body, err)
	}
	if code, body, err := env.call(ctx, env.flywheelURL, "POST", "/v1/experiments/bench-ingest/start", env.adminKey, ""); err != nil || code != http.StatusOK {
		return fmt.Errorf("bench: start experiment: %d %s %v", code, body, err)
	}
	pcfg, err := pgxpool.ParseConfig(env.dbURL)
	if err != nil {
		return err
	}
	pcfg.MaxConns = int32(o.Connections) + 1 // the ceiling's COPYs and the wait sampler
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		return err
	}
	defer pool.Close()
	ceiling := "events"
	if o.Ceiling == "keyed" {
		// The ceiling: the same rows into a table keyed by event id.
		ceiling = "bench_keyed_events"
		if _, err := pool.Exec(ctx, `DROP TABLE IF EXISTS bench_keyed_events;
			CREATE TABLE bench_keyed_events (LIKE events INCLUDING DEFAULTS, PRIMARY KEY (id))`); err != nil {
			return fmt.Errorf("bench: create the ceiling's table: %w", err)
		}
	}

	var runs []ingestRun
	print := func(r ingestRun) {
		runs = append(runs, r)
		if !o.JSON {
			fmt.Fprintf(stdout, "%5d  %-12s %8d %10d %12.0f %9.1fms %9.1fms %6d %9.0f %9.1f %5.0f%%\n", r.Round, r.Target, r.Batches, r.Events, r.EventsPS, r.P50ms, r.P99ms, r.Failed, r.WALPerEvent, r.CPUPerEvent, 100*r.CPUBusy)
		}
	}
	if !o.JSON {
		m := currentMachine()
		fmt.Fprintf(stdout, "flywheel bench ingest: durable events/s, POST /v1/events vs a bare pgx COPY of the same rows into %s\n", ceiling)
		fmt.Fprintf(stdout, "machine:  %d CPUs (%s), go %s\n", m.CPUs, m.CPUModel, m.Go)
		fmt.Fprintf(stdout, "load:     %d clients x %d-event batches, closed loop, %v warm-up + %v per run, %d rounds\n", o.Connections, o.Batch, o.Warmup, o.Duration, o.Rounds)
		fmt.Fprintf(stdout, "events:   10%% exposure, 85%% track, 5%% identify; database: %s\n\n", env.dbDesc)
		fmt.Fprintf(stdout, "round  target        batches     events     events/s       p50       p99  failed  WAL B/ev  CPU µs/ev  busy\n")
	}
	var seq atomic.Uint64
	for round := 1; round <= o.Rounds; round++ {
		for _, target := range o.Targets {
			var send func(ctx context.Context, w int, evs []benchEvent) error
			switch target {
			case "copy":
				send = func(ctx context.Context, _ int, evs []benchEvent) error { return copyEvents(ctx, pool, ceiling, evs) }
			case "storage":
				send = func(ctx context.Context, _ int, evs []benchEvent) error { return copyStorage(ctx, pool, evs) }
			default:
				client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: o.Connections}}
				url := env.flywheelURL + "/v1/events"
				send = func(ctx context.Context, _ int, evs []benchEvent) error {
					return postEvents(ctx, client, url, env.sdkKey, evs, o.Batch)
				}
			}
			stopProfile, err := startProfile(o.CPUProfile, target, round)
			if err != nil {
				return err
			}
			var ids0 int64
			if target == "storage" {
				ids0 = countIDs(ctx, pool)
			}
			stopWaits := sampleWaits(ctx, pool)
			lsn0 := walLSN(ctx, pool)
			r := runIngestLoad(ctx, o, target, &seq, send)
			if target == "storage" {
				// Every committed batch's ids are stored: nothing else
				// writes event_ids while this target runs.
				if ids := countIDs(ctx, pool) - ids0; ids != r.allEvents {
					r.Failed++
					if r.FirstFail == "" {
						r.FirstFail = fmt.Sprintf("event_ids grew by %d rows for %d events committed", ids, r.allEvents)
					}
				}
			}
			if lsn1 := walLSN(ctx, pool); lsn0 >= 0 && lsn1 >= lsn0 && r.allEvents > 0 {
				r.WALPerEvent = float64(lsn1-lsn0) / float64(r.allEvents)
			}
			r.Waits = stopWaits()
			stopProfile()
			r.Round = round
			print(r)
		}
	}
	sum := summarizeIngest(runs)
	sum.Ceiling = ceiling
	agg := scrapeAggregator(ctx, env.flywheelURL)
	if o.JSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(map[string]any{"command": "flywheel bench ingest " + strings.Join(args, " "), "machine": currentMachine(),
			"options": o, "database": env.dbDesc, "runs": runs, "summary": sum, "aggregator": agg})
	}
	fmt.Fprintf(stdout, "\nsummary, medians over %d rounds:\n", o.Rounds)
	if sum.Copy > 0 && sum.V7 > 0 {
		fmt.Fprintf(stdout, "  events/s   copy %9.0f  flywheel-v7 %9.0f  ratio %.2f  (target >= %.2f)  %s\n", sum.Copy, sum.V7, sum.Ratio, ingestRatioTarget, pass(sum.Ratio >= ingestRatioTarget))
	}
	if sum.V7 > 0 {
		fmt.Fprintf(stdout, "  events/s   flywheel-v7 %9.0f  (target >= %d)  %s\n", sum.V7, ingestRateTarget, pass(sum.V7 >= ingestRateTarget))
		fmt.Fprintf(stdout, "  p99        flywheel-v7 %.1fms per %d-event request\n", sum.P99V7, o.Batch)
	}
	if sum.Copy > 0 && sum.Storage > 0 {
		fmt.Fprintf(stdout, "  events/s   copy %9.0f  storage     %9.0f  ratio %.2f  (the design's storage alone: the ratio flywheel-v7 could reach if nothing else cost anything)\n",
			sum.Copy, sum.Storage, sum.Storage/sum.Copy)
	}
	if sum.V4 > 0 && sum.V7 > 0 {
		fmt.Fprintf(stdout, "  ids        flywheel-v4 %9.0f  = %.2fx of v7\n", sum.V4, sum.V4/sum.V7)
	}
	fmt.Fprintf(stdout, "  where PostgreSQL's client backends were (samples every 20 ms, all rounds; CPU = no wait event):\n")
	for _, target := range o.Targets {
		fmt.Fprintf(stdout, "    %-12s %s\n", target, topWaits(runs, target, 6))
	}
	if agg.Cycles > 0 {
		fmt.Fprintf(stdout, "  aggregator (in the flywheel process, on the same cores): %.0f cycles (%.0f failed), %.1fs in all, %.0f units recomputed, lag %.0fs at the end\n",
			agg.Cycles, agg.Errors, agg.Seconds, agg.Units, agg.Lag)
		for _, s := range agg.Steps {
			fmt.Fprintf(stdout, "    step %-13s %5d times, mean %7.0fms, total %8.0fms\n", s.Name, s.Count, s.MeanMs, s.TotalMs)
		}
	}
	return nil
}

// sampleWaits samples pg_stat_activity every 20 ms until the returned
// function is called, which returns the tally (see ingestRun.Waits).
func sampleWaits(ctx context.Context, pool *pgxpool.Pool) func() map[string]int {
	ctx, cancel := context.WithCancel(ctx)
	waits := map[string]int{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			rows, err := pool.Query(ctx, `SELECT COALESCE(wait_event_type || ':' || wait_event, 'CPU') FROM pg_stat_activity
				WHERE state = 'active' AND backend_type = 'client backend' AND pid <> pg_backend_pid()`)
			if err != nil {
				continue
			}
			for rows.Next() {
				var w string
				if rows.Scan(&w) == nil {
					waits[w]++
				}
			}
			rows.Close()
		}
	}()
	return func() map[string]int {
		cancel()
		<-done
		return waits
	}
}

// topWaits formats the n most sampled states of target's runs as shares.
func topWaits(runs []ingestRun, target string, n int) string {
	sum, total := map[string]int{}, 0
	for _, r := range runs {
		if r.Target == target {
			for w, c := range r.Waits {
				sum[w] += c
				total += c
			}
		}
	}
	keys := make([]string, 0, len(sum))
	for w := range sum {
		keys = append(keys, w)
	}
	slices.SortFunc(keys, func(a, b string) int { return cmp.Or(sum[b]-sum[a], strings.Compare(a, b)) })
	var parts []string
	for _, w := range keys[:min(n, len(keys))] {
		parts = append(parts, fmt.Sprintf("%s %.0f%%", w, 100*float64(sum[w])/float64(total)))
	}
	if total == 0 {
		return "no samples"
	}
	return fmt.Sprintf("%s (%d samples)", strings.Join(parts, ", "), total)
}

// ingestAggregator is what the results aggregator did during the bench,
// scraped from flywheel's /metrics.
type ingestAggregator struct {
	Cycles  float64     `json:"cycles"`
	Seconds float64     `json:"seconds"`
	Units   float64     `json:"units_recomputed"`
	Steps   []benchStep `json:"steps"`
	Errors  float64     `json:"failed_cycles"`
	Lag     float64     `json:"lag_seconds_at_end"`
}

// scrapeAggregator reads the aggregator's figures from flywheel's /metrics;
// zero when they cannot be read.
func scrapeAggregator(ctx context.Context, base string) ingestAggregator {
	var a ingestAggregator
	req, err := http.NewRequestWithContext(ctx, "GET", base+"/metrics", nil)
	if err != nil {
		return a
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return a
	}
	defer res.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(res.Body)
	if err != nil {
		return a
	}
	mfs := make([]*dto.MetricFamily, 0, len(fams))
	for _, mf := range fams {
		mfs = append(mfs, mf)
	}
	a.Cycles, a.Seconds, a.Units, a.Steps = aggregatorFiguresOf(mfs)
	a.Errors = counterSumOf(mfs, "flywheel_aggregate_cycles_total", "outcome", "error")
	for _, m := range fams["flywheel_aggregate_lag_seconds"].GetMetric() {
		a.Lag = m.GetGauge().GetValue()
	}
	return a
}

func pass(ok bool) string {
	if ok {
		return "PASS"
	}
	return "FAIL"
}

type ingestSummary struct {
	Ceiling string  `json:"ceiling_table"`
	Copy    float64 `json:"copy_events_per_second"`
	V7      float64 `json:"flywheel_v7_events_per_second"`
	V4      float64 `json:"flywheel_v4_events_per_second"`
	Storage float64 `json:"storage_events_per_second"` // 0 unless run
	Ratio   float64 `json:"ratio_v7_to_copy"`
	P99V7   float64 `json:"flywheel_v7_p99_ms"`
}

func summarizeIngest(runs []ingestRun) ingestSummary {
	by := map[string][]float64{}
	var p99 []float64
	for _, r := range runs {
		by[r.Target] = append(by[r.Target], r.EventsPS)
		if r.Target == "flywheel-v7" {
			p99 = append(p99, r.P99ms)
		}
	}
	s := ingestSummary{Copy: median(by["copy"]), V7: median(by["flywheel-v7"]), V4: median(by["flywheel-v4"]), Storage: median(by["storage"]), P99V7: median(p99)}
	if s.Copy > 0 {
		s.Ratio = s.V7 / s.Copy
	}
	return s
}

// benchEvent is one generated event, sent as JSON or copied as a row.
type benchEvent struct {
	id       uuid.UUID
	typ      string
	unit     string
	event    string
	value    float64
	customer string
	variant  string
}

// runIngestLoad runs o.Connections workers that each send batch after batch
// until the run ends, and measures the committed events and the latency.
func runIngestLoad(ctx context.Context, o ingestOptions, target string, seq *atomic.Uint64, send func(context.Context, int, []benchEvent) error) ingestRun {
	v4 := target == "flywheel-v4"
	start := time.Now()
	measureFrom, end := start.Add(o.Warmup), start.Add(o.Warmup+o.Duration)
	rctx, cancel := context.WithDeadline(ctx, end.Add(30*time.Second)) // bounded
	defer cancel()
	var mu sync.Mutex
	run := ingestRun{Target: target}
	var lat []time.Duration
	var all atomic.Int64                 // committed events, warm-up included
	cpuStart := make(chan machineCPU, 1) // the machine's CPU when the measured time begins
	cpuTimer := time.AfterFunc(o.Warmup, func() { cpuStart <- readMachineCPU() })
	var wg sync.WaitGroup
	for w := range o.Connections {
		wg.Go(func() {
			evs := make([]benchEvent, o.Batch)
			for time.Now().Before(end) && rctx.Err() == nil {
				for i := range evs {
					evs[i] = genEvent(seq.Add(1), v4)
				}
				t0 := time.Now()
				err := send(rctx, w, evs)
				d := time.Since(t0)
				if err == nil {
					all.Add(int64(len(evs)))
				}
				if t0.Before(measureFrom) || t0.After(end) {
					continue
				}
				mu.Lock()
				if err != nil {
					run.Failed++
					if run.FirstFail == "" {
						run.FirstFail = err.Error()
					}
				} else {
					run.Batches++
					run.Events += int64(len(evs))
					lat = append(lat, d)
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(measureFrom)
	if !cpuTimer.Stop() { // it ran, or is running: the measured time began
		cpu0 := <-cpuStart
		if cpu1 := readMachineCPU(); cpu0.ok && cpu1.ok && run.Events > 0 {
			run.CPUPerEvent = (cpu1.busy - cpu0.busy) / float64(run.Events) * 1e6
			// iowait, counted as idle, can step backwards on Linux.
			busy, idle := cpu1.busy-cpu0.busy, max(0, cpu1.idle-cpu0.idle)
			if busy+idle > 0 {
				run.CPUBusy = busy / (busy + idle)
			}
		}
	}
	run.EventsPS = float64(run.Events) / elapsed.Seconds()
	run.allEvents = all.Load()
	slices.Sort(lat)
	if n := len(lat); n > 0 {
		run.P50ms, run.P99ms = ms(lat[n/2]), ms(lat[min(n-1, n*99/100)])
	}
	return run
}

// genEvent makes event n: 10% exposures, 85% tracks, 5% identifies, over
// 200,000 customers.
func genEvent(n uint64, v4 bool) benchEvent {
	var id uuid.UUID
	if v4 {
		id = uuid.New()
	} else {
		id = uuid.Must(uuid.NewV7())
	}
	unit := "c-" + strconv.FormatUint(n*7919%200_000, 10)
	switch n % 20 {
	case 0, 1:
		v := "control"
		if n%3 == 0 {
			v = "treatment"
		}
		return benchEvent{id: id, typ: "exposure", unit: unit, variant: v}
	case 2:
		return benchEvent{id: id, typ: "identify", unit: "d-" + strconv.FormatUint(n, 10), customer: unit}
	}
	return benchEvent{id: id, typ: "track", unit: unit, event: "purchase", value: float64(n%10000) / 100}
}

// postEvents sends one batch and checks every event was accepted.
func postEvents(ctx context.Context, client *http.Client, url, key string, evs []benchEvent, batch int) error {
	body := make([]byte, 0, 160*batch)
	body = append(body, `{"events":[`...)
	for i, e := range evs {
		if i > 0 {
			body = append(body, ',')
		}
		body = append(body, `{"id":"`...)
		body = append(body, e.id.String()...)
		body = append(body, `","type":"`...)
		body = append(body, e.typ...)
		body = append(body, `","unit_type":"`...)
		switch e.typ {
		case "exposure":
			body = append(body, `customer","unit_id":"`...)
			body = append(body, e.unit...)
			body = append(body, `","experiment":"bench-ingest","variant":"`...)
			body = append(body, e.variant...)
			body = append(body, `","attributes":{"device":"mobile"}}`...)
		case "identify":
			body = append(body, `device","unit_id":"`...)
			body = append(body, e.unit...)
			body = append(body, `","customer_id":"`...)
			body = append(body, e.customer...)
			body = append(body, `"}`...)
		default:
			body = append(body, `customer","unit_id":"`...)
			body = append(body, e.unit...)
			body = append(body, `","event":"purchase","value":`...)
			body = strconv.AppendFloat(body, e.value, 'f', 2, 64)
			body = append(body, '}')
		}
	}
	body = append(body, "]}"...)
	req, err := http.NewRequestWithContext(ctx, "POST", url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Content-Type", "application/json")
	res, err := client.Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	var ans struct {
		Accepted int `json:"accepted"`
	}
	if err := json.NewDecoder(res.Body).Decode(&ans); err != nil || res.StatusCode != 200 || ans.Accepted != len(evs) {
		return fmt.Errorf("status %d, accepted %d of %d (%v)", res.StatusCode, ans.Accepted, len(evs), err)
	}
	return nil
}

// copyEvents is the ceiling: the same rows, COPYed straight into table
// (events, or a table of its columns keyed by id) in one committed
// transaction.
func copyEvents(ctx context.Context, pool *pgxpool.Pool, table string, evs []benchEvent) error {
	now := time.Now().UTC()
	return pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error { return copyEventRows(ctx, tx, table, evs, now) })
}

// copyStorage is what this design stores of each event at the least, with
// nothing else of ingestion: its row in events, under the events table's
// indexes (the unit's hash index among them), and its id in event_ids, in
// one committed transaction (the storage target).
func copyStorage(ctx context.Context, pool *pgxpool.Pool, evs []benchEvent) error {
	now := time.Now().UTC()
	return pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if err := copyEventRows(ctx, tx, "events", evs, now); err != nil {
			return err
		}
		_, err := tx.CopyFrom(ctx, pgx.Identifier{"event_ids"}, []string{"id", "unit_id", "received_at"},
			pgx.CopyFromSlice(len(evs), func(i int) ([]any, error) {
				e := &evs[i]
				return []any{pgtype.UUID{Bytes: e.id, Valid: true}, e.unit, now}, nil
			}))
		return err
	})
}

// copyEventRows COPYs evs into table as rows of events' columns.
func copyEventRows(ctx context.Context, tx pgx.Tx, table string, evs []benchEvent, now time.Time) error {
	_, err := tx.CopyFrom(ctx, pgx.Identifier{table},
		[]string{"unit_type", "unit_id", "id", "type", "ts", "received_at", "experiment", "variant", "event", "value", "customer_id", "attributes"},
		pgx.CopyFromSlice(len(evs), func(i int) ([]any, error) {
			e := &evs[i]
			row := []any{"customer", e.unit, pgtype.UUID{Bytes: e.id, Valid: true}, e.typ, now, now, nil, nil, nil, nil, nil, nil}
			switch e.typ {
			case "exposure":
				row[6], row[7], row[11] = "bench-ingest", e.variant, []byte(`{"device":"mobile"}`)
			case "identify":
				row[0], row[10] = "device", e.customer
			default:
				row[8], row[9] = e.event, e.value
			}
			return row, nil
		}))
	return err
}
