// Package loadgen is a small closed-loop HTTP/1.1 load generator for
// benchmarks over loopback: N workers, each with its own keep-alive
// connection, send a fixed request (with a unique id substituted into the
// body) back to back for a duration or a count, and record every latency
// into a per-worker histogram, so the hot path takes no locks.
//
// It is bounded by construction: a run always ends by itself (after
// Warmup+Duration, or MaxDuration in count mode, plus Grace for requests in
// flight), and it only targets the URL it is given, which must name a
// loopback host. It imports only the standard library and must not import
// other flywheel packages.
package loadgen

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"runtime/pprof"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Config describes one run.
type Config struct {
	// URL is the only address the run sends to; its host must be a loopback
	// address (127.0.0.0/8, ::1) or localhost.
	URL string
	// Method defaults to POST when Body is set, else GET.
	Method string
	// Header is sent with every request; it is only read.
	Header http.Header
	// Body is sent with every request, with the first IDPlaceholder in it
	// (when not "") replaced by "w<worker>-<seq>", unique within the run.
	Body          []byte
	IDPlaceholder string
	// Connections is the number of concurrent workers, each with its own
	// connection (1 to 10000).
	Connections int
	// Warmup is sent first and not measured.
	Warmup time.Duration
	// Duration is the measured time after Warmup. Requests, when > 0, ends
	// the run after that many measured requests instead, if that comes
	// first. At least one of them must be set.
	Duration time.Duration
	Requests int64
	// MaxDuration bounds a run with Duration 0 (count mode); default 10 min.
	MaxDuration time.Duration
	// Grace is how long requests in flight at the end may take before they
	// are cancelled (and counted as errors); default 10 s.
	Grace time.Duration
}

// Result is what a run measured. Only requests sent after the warm-up count.
type Result struct {
	Requests   int64         // answered, whatever the status
	Non2xx     int64         // answered with a status outside 200-299
	Errors     int64         // no answer: connection or protocol errors
	FirstError string        // the first error or non-2xx answer, for diagnosis
	Elapsed    time.Duration // from the end of the warm-up to the last answer
	Latency    *Histogram    // of every answered request
}

// RPS returns the answered requests per second.
func (r Result) RPS() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Requests) / r.Elapsed.Seconds()
}

func (c *Config) check() error {
	u, err := url.Parse(c.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("loadgen: URL %q: want http://host:port/path", c.URL)
	}
	if h := u.Hostname(); h != "localhost" {
		if ip := net.ParseIP(h); ip == nil || !ip.IsLoopback() {
			return fmt.Errorf("loadgen: URL host %q is not a loopback address", h)
		}
	}
	if c.Connections < 1 || c.Connections > 10000 {
		return fmt.Errorf("loadgen: connections %d: want 1 to 10000", c.Connections)
	}
	if c.Duration < 0 || c.Requests < 0 || c.Warmup < 0 || c.MaxDuration < 0 || c.Grace < 0 {
		return errors.New("loadgen: durations and counts must not be negative")
	}
	if c.Duration == 0 && c.Requests == 0 {
		return errors.New("loadgen: set Duration or Requests")
	}
	if c.Method == "" {
		c.Method = http.MethodGet
		if c.Body != nil {
			c.Method = http.MethodPost
		}
	}
	if c.MaxDuration == 0 {
		c.MaxDuration = 10 * time.Minute
	}
	if c.Grace == 0 {
		c.Grace = 10 * time.Second
	}
	return nil
}

// worker is one connection's state and tallies; only its goroutine touches
// it until the run ends.
type worker struct {
	id                     int
	hist                   Histogram
	requests, non2xx, errs int64
	firstErr               string
	lastDone               time.Time
	measuring              bool
	transport              *http.Transport
	_                      [64]byte // keep neighbours' hot fields off this cache line
}

// Run sends requests as described by cfg until the duration or count is
// reached or ctx ends, and returns what it measured. It returns an error
// only for a bad Config or when ctx ends before the run does.
func Run(ctx context.Context, cfg Config) (Result, error) {
	if err := cfg.check(); err != nil {
		return Result{}, err
	}
	base, err := http.NewRequest(cfg.Method, cfg.URL, nil)
	if err != nil {
		return Result{}, fmt.Errorf("loadgen: %w", err)
	}
	if cfg.Header != nil {
		base.Header = cfg.Header
	}
	tmpl := newTemplate(cfg.Body, cfg.IDPlaceholder)

	start := time.Now()
	measureFrom := start.Add(cfg.Warmup)
	run := cfg.Duration
	if run == 0 {
		run = cfg.MaxDuration
	}
	end := measureFrom.Add(run)
	rctx, cancel := context.WithDeadline(ctx, end.Add(cfg.Grace))
	defer cancel()
	base = base.WithContext(rctx)

	var tickets ticketBox
	tickets.left.Store(cfg.Requests)
	workers := make([]*worker, cfg.Connections)
	var wg sync.WaitGroup
	for i := range workers {
		w := &worker{id: i, transport: newTransport()}
		workers[i] = w
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer w.transport.CloseIdleConnections()
			// The label lets a CPU profile of a process that also hosts the
			// server leave the generator out: pprof -tagignore loadgen=worker.
			pprof.Do(rctx, pprof.Labels("loadgen", "worker"), func(context.Context) {
				w.loop(rctx, base, tmpl, measureFrom, end, &tickets, cfg.Requests > 0)
			})
		}()
	}
	wg.Wait()

	res := Result{Latency: new(Histogram)}
	var last time.Time
	for _, w := range workers {
		res.Latency.Merge(&w.hist)
		res.Requests += w.requests
		res.Non2xx += w.non2xx
		res.Errors += w.errs
		if res.FirstError == "" {
			res.FirstError = w.firstErr
		}
		if w.lastDone.After(last) {
			last = w.lastDone
		}
	}
	if last.After(measureFrom) {
		res.Elapsed = last.Sub(measureFrom)
	}
	if err := ctx.Err(); err != nil {
		return res, err
	}
	return res, nil
}

func newTransport() *http.Transport {
	return &http.Transport{
		Proxy:               nil, // never a proxy: loopback only
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        1,
		MaxIdleConnsPerHost: 1,
		MaxConnsPerHost:     1,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}
}

// ticketBox hands out the measured requests of a count-limited run.
type ticketBox struct{ left atomic.Int64 }

func (t *ticketBox) take() bool { return t.left.Add(-1) >= 0 }

func (w *worker) loop(ctx context.Context, base *http.Request, tmpl template, measureFrom, end time.Time, tickets *ticketBox, counted bool) {
	var seq uint64
	for ctx.Err() == nil {
		t0 := time.Now()
		if !t0.Before(end) {
			return
		}
		measured := !t0.Before(measureFrom)
		if measured && counted && !tickets.take() {
			return
		}
		seq++
		// A fresh body each time: the transport may still close the last
		// one after RoundTrip returns, so it must not be reused.
		b := &body{b: tmpl.appendBody(make([]byte, 0, tmpl.size()), w.id, seq)}
		req := *base // shallow: the header map is shared, read only
		req.Body, req.ContentLength = b, int64(len(b.b))
		if len(b.b) == 0 {
			req.Body = nil
		}
		res, err := w.transport.RoundTrip(&req)
		var snippet []byte
		if err == nil {
			if res.StatusCode/100 != 2 && measured && w.firstErr == "" {
				snippet, _ = io.ReadAll(io.LimitReader(res.Body, 200))
			}
			_, err = io.Copy(io.Discard, res.Body)
			res.Body.Close()
		}
		done := time.Now()
		if !measured {
			if err != nil {
				pause(ctx)
			}
			continue
		}
		if err != nil {
			w.errs++
			if w.firstErr == "" {
				w.firstErr = err.Error()
			}
			pause(ctx) // a dead server must not turn the run into a busy loop
			continue
		}
		w.hist.Record(done.Sub(t0))
		w.requests++
		w.lastDone = done
		if res.StatusCode/100 != 2 {
			w.non2xx++
			if w.firstErr == "" {
				w.firstErr = "status " + strconv.Itoa(res.StatusCode) + ": " + string(snippet)
			}
		}
	}
}

func pause(ctx context.Context) {
	t := time.NewTimer(10 * time.Millisecond)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// body is a request body that may be read once.
type body struct {
	b   []byte
	off int
}

func (b *body) Read(p []byte) (int, error) {
	if b.off >= len(b.b) {
		return 0, io.EOF
	}
	n := copy(p, b.b[b.off:])
	b.off += n
	return n, nil
}

func (b *body) Close() error { return nil }
