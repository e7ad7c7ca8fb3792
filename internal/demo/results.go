package demo

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// resultsDoc is the part of GET /v1/experiments/{key}/results the demo
// reads.
type resultsDoc struct {
	Units         int64 `json:"units"`
	PendingEvents int64 `json:"pending_events"`
	Health        struct {
		SRM struct {
			OK bool `json:"ok"`
		} `json:"srm"`
		Warnings []string `json:"warnings"`
	} `json:"health"`
	Metrics []struct {
		Metric  string `json:"metric"`
		Role    string `json:"role"`
		Summary string `json:"summary"`
	} `json:"metrics"`
}

// results reads an experiment's results.
func (c *client) results(ctx context.Context, key string) (resultsDoc, error) {
	var doc resultsDoc
	_, err := c.do(ctx, http.MethodGet, "/v1/experiments/"+url.PathEscape(key)+"/results", nil, &doc)
	if err != nil {
		return doc, fmt.Errorf("results of %s: %w", key, err)
	}
	return doc, nil
}

// waitComplete polls the results of the seeded experiments until they
// are complete: nothing pending (pending_events counts every experiment's
// events) and at least the units the demo sent counted in each. It gives
// up after wait and returns what was pending and missing last.
func (s *seeder) waitComplete(ctx context.Context, rep *Report, wait time.Duration) (pending, missing int64, err error) {
	start := time.Now()
	deadline := start.Add(wait)
	var lastPrint time.Time
	for {
		pending, missing = 0, 0
		for _, key := range rep.Experiments {
			doc, err := s.c.results(ctx, key)
			if err != nil {
				return pending, missing, err
			}
			pending = max(pending, doc.PendingEvents)
			var want int64
			for _, t := range rep.Expected[key] {
				want += t.Units
			}
			missing += max(want-doc.Units, 0)
		}
		if pending == 0 && missing == 0 || time.Now().After(deadline) {
			return pending, missing, nil
		}
		if time.Since(lastPrint) >= 2*time.Second {
			// The counts move when a cycle ends; a first cycle over
			// everything sent takes seconds, so the time says the demo
			// is not stuck.
			s.p.printf("results: %s events and %s units still to count, %.0f s after the last event", count(int(pending)), count(int(missing)),
				time.Since(start).Seconds())
			lastPrint = time.Now()
		}
		select {
		case <-time.After(500 * time.Millisecond):
		case <-ctx.Done():
			return pending, missing, ctx.Err()
		}
	}
}

// awaitAggregation waits, for at most 10 s, until the server has finished
// two aggregation cycles (GET /metrics, flywheel_aggregate_cycles_total),
// so that a cycle that started after the demo's new metrics and
// experiments has built their (empty) aggregates before the events arrive.
// Otherwise the first build would read whatever part of the data had
// arrived, while the events that follow wait for it; results read before
// that build are recomputed from the raw events, complete, and the
// aggregates then briefly lag behind them. A server that does not show
// the counter (or whose cycles another process runs) gets the 10 s.
func (s *seeder) awaitAggregation(ctx context.Context) {
	start, ok := s.c.aggregationCycles(ctx)
	deadline := time.Now().Add(10 * time.Second)
	for ok && time.Now().Before(deadline) {
		select {
		case <-time.After(100 * time.Millisecond):
		case <-ctx.Done():
			return
		}
		if n, read := s.c.aggregationCycles(ctx); read && n >= start+2 {
			return
		}
	}
}

// aggregationCycles reads the aggregation cycles the server has run (every
// outcome) from its Prometheus metrics.
func (c *client) aggregationCycles(ctx context.Context) (float64, bool) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+"/metrics", nil)
	if err != nil {
		return 0, false
	}
	res, err := c.http.Do(req)
	if err != nil {
		return 0, false
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return 0, false
	}
	// The counter has a line per outcome once a cycle has had it; the lag
	// gauge is always there, so a server without a line has run none.
	var total float64
	flywheel := false
	sc := bufio.NewScanner(res.Body)
	for sc.Scan() {
		line := sc.Text()
		flywheel = flywheel || strings.HasPrefix(line, "flywheel_aggregate_lag_seconds ")
		if !strings.HasPrefix(line, "flywheel_aggregate_cycles_total{") {
			continue
		}
		v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
		if err != nil {
			return 0, false
		}
		total += v
	}
	return total, flywheel && sc.Err() == nil
}

// summarize prints, per experiment, the units counted against those the
// demo sent, whether the trust checks pass, and the primary metrics'
// summaries.
func (s *seeder) summarize(ctx context.Context, rep *Report) error {
	for _, key := range rep.Experiments {
		doc, err := s.c.results(ctx, key)
		if err != nil {
			return err
		}
		var want int64
		for _, t := range rep.Expected[key] {
			want += t.Units
		}
		units := count(int(doc.Units)) + " units"
		if doc.Units != want {
			units += fmt.Sprintf(" (the demo sent %s)", count(int(want)))
		}
		trust := "trust checks pass"
		if !doc.Health.SRM.OK {
			trust = "TRUST CHECKS FAIL"
		}
		s.p.printf("%s: %s, %s", key, units, trust)
		for _, w := range doc.Health.Warnings {
			if strings.HasPrefix(w, "sample ratio mismatch") {
				s.p.printf("  %s", w)
			}
		}
		for _, m := range doc.Metrics {
			if m.Role == "primary" && m.Summary != "" {
				s.p.printf("  %s", m.Summary)
			}
		}
	}
	return nil
}

// printer writes progress lines; it is safe for concurrent use.
type printer struct {
	mu sync.Mutex
	w  io.Writer
}

func (p *printer) printf(format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintf(p.w, format+"\n", args...)
}

// progress returns a callback that prints how much of total is done, at
// most every two seconds, and at the end.
func (p *printer) progress(what string, total int, start time.Time) func(done int) {
	var mu sync.Mutex
	last := start
	return func(done int) {
		mu.Lock()
		defer mu.Unlock()
		if done < total && time.Since(last) < 2*time.Second {
			return
		}
		last = time.Now()
		el := time.Since(start).Seconds()
		p.printf("%s: %s of %s (%d%%), %s/s", what, count(done), count(total), 100*done/max(total, 1), count(int(float64(done)/max(el, 1e-3))))
	}
}

// count formats n with thousands separators: 64,000.
func count(n int) string {
	s := strconv.Itoa(n)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, r := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(r)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}
