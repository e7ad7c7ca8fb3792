package sdk

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"testing"
	"time"

	"github.com/flywheel-oss/flywheel/assign"
)

// The benchmarks use assign's own benchmark experiment: one running
// experiment with the contract's targeting rule and an override.
const (
	benchKey  = "checkout-button"
	benchUnit = "customer-000042"
)

var (
	benchAttrs  = map[string]any{"country": "FR", "stage": "prospect", "plan": "pro", "age": 31.0}
	benchConfig = assign.Config{Revision: 1, Experiments: []assign.Experiment{benchExperiment(benchKey)}}
	sinkResult  assign.Result
	sinkAssign  Assignment
)

func benchExperiment(key string) assign.Experiment {
	return assign.Experiment{
		Key: key, UnitType: "customer", Traffic: 1, Running: true,
		Variants:  []assign.Variant{{Key: "control", Weight: 0.5}, {Key: "treatment", Weight: 0.5, Payload: json.RawMessage(`{"color":"#0a0"}`)}},
		Targeting: json.RawMessage(`{"country": {"$in": ["FR", "BE"]}, "stage": "prospect"}`),
		Overrides: map[string]string{"qa-customer-1": "treatment"},
	}
}

// benchServer answers the config and every events request at once.
func benchServer(tb testing.TB, cfg assign.Config) string {
	tb.Helper()
	raw, err := json.Marshal(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet {
			w.Header().Set("ETag", `"1"`)
			w.Write(raw)
			return
		}
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"accepted":0,"duplicates":0,"dropped":0,"rejected":[]}`)
	}))
	tb.Cleanup(srv.Close)
	return srv.URL
}

func benchClient(tb testing.TB, url string, opts ...Option) *Client {
	tb.Helper()
	c, err := New(context.Background(), Config{URL: url, Key: "sdk-key"}, append([]Option{WithStartupTimeout(30 * time.Second)}, opts...)...)
	if err != nil {
		tb.Fatal(err)
	}
	if err := c.EnsureLoaded(context.Background()); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { c.Close(context.Background()) })
	return c
}

// callerCPU starts measuring the CPU time of the benchmark's goroutine,
// locked to its thread until the returned func reports it as cpu-ns/op:
// what the calls cost the app, whatever time other goroutines (the
// delivery, the test server, the collector) and other processes on a
// shared machine take the core from it, which ns/op includes. Call it
// after the setup.
func callerCPU(b *testing.B) (report func()) {
	runtime.LockOSThread()
	start, ok := threadCPU()
	return func() {
		end, _ := threadCPU()
		runtime.UnlockOSThread()
		if ok && b.N > 0 {
			b.ReportMetric(float64(end-start)/float64(b.N), "cpu-ns/op")
		}
	}
}

// BenchmarkAssign is Client.Assign with exposure logging on, after the
// unit's first call (its exposure is queued once): config load, consent,
// unit id, assign, exposure cache hit. Target: 200 ns/op and 0 allocs/op;
// compare with BenchmarkAssignFloor in the same run.
func BenchmarkAssign(b *testing.B) {
	c := benchClient(b, benchServer(b, benchConfig))
	ctx := context.Background()
	u := Unit{CustomerID: benchUnit, Attributes: benchAttrs}
	if a := c.Assign(ctx, u, benchKey); !a.Enrolled {
		b.Fatalf("Assign = %+v, want enrolled", a)
	}
	b.ReportAllocs()
	for b.Loop() {
		sinkAssign = c.Assign(ctx, u, benchKey)
	}
	if s := c.Stats(); s.Exposures != 1 {
		b.Fatalf("%d exposures logged, want 1", s.Exposures)
	}
}

// BenchmarkAssignParallel is BenchmarkAssign from GOMAXPROCS goroutines,
// each with its own unit.
func BenchmarkAssignParallel(b *testing.B) {
	c := benchClient(b, benchServer(b, benchConfig))
	ctx := context.Background()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		u := Unit{CustomerID: fmt.Sprintf("customer-%p", &pb), Attributes: benchAttrs}
		var a Assignment
		for pb.Next() {
			a = c.Assign(ctx, u, benchKey)
		}
		_ = a
	})
}

// BenchmarkAssignFloor is the floor: a bare assign.Snapshot.Assign of the
// same experiment and unit.
func BenchmarkAssignFloor(b *testing.B) {
	s, err := assign.Compile(benchConfig)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	defer callerCPU(b)()
	for b.Loop() {
		sinkResult = s.Assign(benchKey, benchUnit, benchAttrs)
	}
}

// recordingCases are the clients BenchmarkAssignFirstCall and
// BenchmarkTrack record events with. A loop of calls records events faster
// than the delivery goroutine sends them to a local server, so the buffer
// fills, and that delivery and the server take a core's worth of CPU from
// the machine:
//
//   - buffer=10000, the default: the buffer's oldest events are pushed out
//     and its blocks reused, while the delivery sends all it can.
//   - buffer=1048576, as the benchmarks ran before: also a backlog growing
//     to a million events, in fresh memory.
//   - server=hung: the server never answers, so the delivery waits on its
//     first batch and the calls run alone, as they do when the delivery is
//     not saturated (a remote server, events at the rates apps record).
var recordingCases = []struct {
	name string
	opts []Option
}{
	{fmt.Sprintf("buffer=%d", defaultBufferSize), nil},
	{fmt.Sprintf("buffer=%d", 1<<20), []Option{WithBufferSize(1 << 20)}},
	{"server=hung", []Option{WithHTTPClient(&http.Client{Transport: hungEvents{}})}},
}

// recordingClient returns a client of a benchmark server with the options.
func recordingClient(b *testing.B, opts []Option) *Client {
	c := benchClient(b, benchServer(b, benchConfig), opts...)
	b.Cleanup(func() { // before benchClient's: a hung request holds Close until it gives up
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		c.Close(ctx)
	})
	runtime.GC() // the setup's collection is not the calls'
	return c
}

// hungEvents is a transport on which POST /v1/events never answers, until
// its request is cancelled; other requests go through.
type hungEvents struct{}

func (hungEvents) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Method != http.MethodPost {
		return http.DefaultTransport.RoundTrip(r)
	}
	if r.Body != nil {
		r.Body.Close()
	}
	<-r.Context().Done()
	return nil, r.Context().Err()
}

// BenchmarkAssignFirstCall is the cost of a unit's first assignment: the
// exposure event is recorded and queued.
func BenchmarkAssignFirstCall(b *testing.B) {
	units := make([]Unit, 1<<20)
	for i := range units {
		units[i] = Unit{CustomerID: fmt.Sprintf("customer-%07d", i), Attributes: benchAttrs}
	}
	for _, rc := range recordingCases {
		b.Run(rc.name, func(b *testing.B) {
			c := recordingClient(b, rc.opts)
			ctx := context.Background()
			b.ReportAllocs()
			defer callerCPU(b)()
			i := 0
			for b.Loop() {
				sinkAssign = c.Assign(ctx, units[i%len(units)], benchKey)
				i++
			}
		})
	}
}

// BenchmarkTrack is the app's cost of Track: recording and queueing the
// event.
func BenchmarkTrack(b *testing.B) {
	for _, rc := range recordingCases {
		b.Run(rc.name, func(b *testing.B) {
			c := recordingClient(b, rc.opts)
			ctx := context.Background()
			u := Unit{CustomerID: benchUnit}
			props := map[string]any{"currency": "EUR"}
			b.ReportAllocs()
			defer callerCPU(b)()
			for b.Loop() {
				if err := c.Track(ctx, u, "purchase", 59.90, props); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkDelivery measures the events per second the delivery loop
// turns into JSON and sends to a server that answers 200 at once: b.N
// Track records are queued first, then timed from Flush to the last answer
// (batches of 500).
func BenchmarkDelivery(b *testing.B) {
	c := benchClient(b, benchServer(b, benchConfig), WithFlushInterval(time.Hour), WithBufferSize(max(b.N, 1)))
	ev := outEvent{typ: "track", unitType: "customer", unitID: benchUnit, event: "purchase", value: 59.90, hasValue: true,
		properties: map[string]any{"currency": "EUR"}}
	rec, err := appendRecord(nil, time.Now().UnixNano(), &ev)
	if err != nil {
		b.Fatal(err)
	}
	for range b.N {
		c.queue.push(rec)
	}
	size := len(appendRecordJSON(nil, rec, newEventID(recordTime(rec))))
	b.SetBytes(int64(size))
	b.ResetTimer()
	if err := c.Flush(context.Background()); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	if s := c.Stats(); s.Sent != uint64(b.N) {
		b.Fatalf("sent %d, want %d", s.Sent, b.N)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkClientMemory1000 reports the heap a client holding 1,000
// experiments (a third targeted, a third in layers) keeps: config,
// compiled snapshot and the default exposure cache (512 KiB of it).
func BenchmarkClientMemory1000(b *testing.B) {
	cfg := assign.Config{Revision: 1}
	for i := range 1000 {
		e := benchExperiment(fmt.Sprintf("experiment-%04d", i))
		e.Overrides = nil
		switch i % 3 {
		case 0:
			e.Targeting = nil
		case 2:
			e.Targeting = nil
			e.Layer = fmt.Sprintf("layer-%d", i%10)
			e.LayerRange = &assign.LayerRange{From: (i / 10) * 100, To: (i/10)*100 + 100}
		}
		cfg.Experiments = append(cfg.Experiments, e)
	}
	raw, err := json.Marshal(cfg)
	if err != nil {
		b.Fatal(err)
	}
	heap := func() uint64 {
		runtime.GC()
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	before := heap()
	c, err := New(context.Background(), Config{}, WithBootstrap(raw))
	if err != nil {
		b.Fatal(err)
	}
	held := heap() - before
	runtime.KeepAlive(c)
	b.ReportAllocs()
	for b.Loop() {
		c, err := New(context.Background(), Config{}, WithBootstrap(raw))
		if err != nil {
			b.Fatal(err)
		}
		c.Close(context.Background())
	}
	b.ReportMetric(float64(held), "heap-B/client")
	b.ReportMetric(float64(held-uint64(8*defaultCacheSize)), "heap-B/config")
}
