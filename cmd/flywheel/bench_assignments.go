package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
)

const benchAssignmentsUsage = `usage: flywheel bench assignments [--units 1000000] [--sample 20000] [--skip-events]
    a campaign list of --units customers through POST /v1/experiments/{key}/assignments:
    assign only (target 10 s), with exposures recorded (target 60 s), the retry
    (nothing recorded twice), until results count every enrolled unit; compared in
    the same run with /v1/assign called once per unit (--sample units, scaled) and
    with the same exposures sent through POST /v1/events (batches of 10,000)`

// runBenchAssignments is flywheel bench assignments.
func runBenchAssignments(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := newFlagSet("bench assignments", stderr)
	units := fs.Int("units", 1_000_000, "customers in the list (1-10,000,000)")
	sample := fs.Int("sample", 20_000, "customers assigned one /v1/assign call each, for the comparison (0 skips it)")
	skipEvents := fs.Bool("skip-events", false, "skip the comparison with POST /v1/events")
	if err := fs.Parse(args); err != nil {
		return usageError{err.Error() + "\n" + benchAssignmentsUsage}
	}
	if fs.NArg() > 0 || *units < 1 || *units > 10_000_000 || *sample < 0 || *sample > *units {
		return usageError{benchAssignmentsUsage}
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
	for _, key := range []string{"campaign", "campaign-events"} {
		exp := fmt.Sprintf(`{"key": %q, "name": "Campaign", "unit_type": "customer", "traffic": 0.9,
			"variants": [{"key": "control", "weight": 0.5}, {"key": "discount", "weight": 0.5}],
			"targeting": {"country": {"$in": ["FR", "BE", "DE"]}}}`, key)
		for _, c := range []struct{ method, path, body string }{{"POST", "/v1/experiments", exp}, {"POST", "/v1/experiments/" + key + "/start", ""}} {
			if code, got, err := env.call(ctx, env.flywheelURL, c.method, c.path, env.adminKey, c.body); err != nil || code >= 300 {
				return fmt.Errorf("bench: %s %s: %d %s %v", c.method, c.path, code, got, err)
			}
		}
	}
	list := campaignList(*units)
	fmt.Fprintf(stdout, "flywheel bench assignments --units %d --sample %d\n", *units, *sample)
	fmt.Fprintf(stdout, "machine: %+v\nload before: %s\n", currentMachine(), loadAvg())
	fmt.Fprintf(stdout, "list: %d customers, %.1f MB of NDJSON, 4 countries (3 targeted), traffic 0.9\n\n", *units, float64(len(list))/1e6)

	post := func(query string) (time.Duration, http.Header, int, error) {
		start := time.Now()
		req, err := http.NewRequestWithContext(ctx, "POST", env.flywheelURL+"/v1/experiments/campaign/assignments"+query, bytes.NewReader(list))
		if err != nil {
			return 0, nil, 0, err
		}
		req.Header.Set("Authorization", "Bearer "+env.adminKey)
		req.Header.Set("Content-Type", "application/x-ndjson")
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, nil, 0, err
		}
		defer res.Body.Close()
		if res.StatusCode != 200 {
			b, _ := io.ReadAll(res.Body)
			return 0, nil, 0, fmt.Errorf("bench: list answered %d: %s", res.StatusCode, b)
		}
		lines, err := countLines(res.Body)
		return time.Since(start), res.Header, lines, err
	}
	check := func(name string, h http.Header, lines int) error {
		if lines != *units || h.Get("X-Flywheel-Units") != strconv.Itoa(*units) {
			return fmt.Errorf("bench: %s: %d answer lines, X-Flywheel-Units %s, want %d", name, lines, h.Get("X-Flywheel-Units"), *units)
		}
		return nil
	}
	row := func(name string, d time.Duration, target float64, extra string) {
		verdict := ""
		if target > 0 {
			verdict = "MET"
			if d.Seconds() > target {
				verdict = "MISSED"
			}
			verdict = fmt.Sprintf("target ≤ %.0f s: %s", target, verdict)
		}
		fmt.Fprintf(stdout, "%-44s %8.2f s %10.0f units/s  %s %s\n", name, d.Seconds(), float64(*units)/d.Seconds(), verdict, extra)
	}

	progress("assign only")
	dAssign, h, lines, err := post("")
	if err != nil {
		return err
	}
	if err := check("assign", h, lines); err != nil {
		return err
	}
	enrolled, _ := strconv.Atoi(h.Get("X-Flywheel-Enrolled"))
	row("list, assign only", dAssign, 10, fmt.Sprintf("(%d enrolled)", enrolled))

	progress("assign only, CSV in and out")
	csvList := campaignCSV(*units)
	dCSV, lines, err := postCSV(ctx, env, csvList)
	if err != nil {
		return err
	}
	if lines != *units+1 {
		return fmt.Errorf("bench: CSV answer has %d lines, want %d and the header", lines, *units)
	}
	row("list as CSV, CSV answer, assign only", dCSV, 10, fmt.Sprintf("(%.1f MB of CSV)", float64(len(csvList))/1e6))

	sent := time.Now().UTC().Add(time.Second).Truncate(time.Second).Format(time.RFC3339)
	progress("record exposures")
	dRecord, h, lines, err := post("?record_exposure=true&sent_at=" + sent)
	if err != nil {
		return err
	}
	if err := check("record", h, lines); err != nil {
		return err
	}
	if h.Get("X-Flywheel-Exposures-Recorded") != strconv.Itoa(enrolled) {
		return fmt.Errorf("bench: recorded %s exposures, want %d", h.Get("X-Flywheel-Exposures-Recorded"), enrolled)
	}
	row("list, exposures recorded", dRecord, 60, fmt.Sprintf("(%s recorded)", h.Get("X-Flywheel-Exposures-Recorded")))

	progress("retry")
	dRetry, h, lines, err := post("?record_exposure=true&sent_at=" + sent)
	if err != nil {
		return err
	}
	if err := check("retry", h, lines); err != nil {
		return err
	}
	if h.Get("X-Flywheel-Exposures-Recorded") != "0" || h.Get("X-Flywheel-Exposures-Duplicates") != strconv.Itoa(enrolled) {
		return fmt.Errorf("bench: retry recorded %s, duplicates %s; want 0 and %d", h.Get("X-Flywheel-Exposures-Recorded"), h.Get("X-Flywheel-Exposures-Duplicates"), enrolled)
	}
	row("list, retry (nothing recorded twice)", dRetry, 0, fmt.Sprintf("(%s duplicates)", h.Get("X-Flywheel-Exposures-Duplicates")))

	progress("until results count every enrolled unit")
	start := time.Now()
	for {
		code, got, err := env.call(ctx, env.flywheelURL, "GET", "/v1/experiments/campaign/results", env.adminKey, "")
		var res struct{ Units int }
		if err == nil && code == 200 && json.Unmarshal(got, &res) == nil && res.Units == enrolled {
			break
		}
		if time.Since(start) > 5*time.Minute {
			return fmt.Errorf("bench: results count %d units after 5 min, want %d (%d %v)", res.Units, enrolled, code, err)
		}
		time.Sleep(250 * time.Millisecond)
	}
	fmt.Fprintf(stdout, "%-44s %8.2f s after the list's answer: results count all %d enrolled units\n\n", "results", time.Since(start).Seconds(), enrolled)

	fmt.Fprintf(stdout, "same-run comparisons:\n")
	if *sample > 0 {
		progress("/v1/assign, one call per unit, %d units", *sample)
		d, err := assignLoop(ctx, env, list, *sample)
		if err != nil {
			return err
		}
		scaled := time.Duration(float64(d) * float64(*units) / float64(*sample))
		fmt.Fprintf(stdout, "%-44s %8.2f s %10.0f units/s  (%d units took %.2f s, 16 connections); the list is %.1fx faster\n",
			"/v1/assign per unit (scaled)", scaled.Seconds(), float64(*sample)/d.Seconds(), *sample, d.Seconds(), scaled.Seconds()/dAssign.Seconds())
	}
	if !*skipEvents {
		progress("the same exposures through POST /v1/events")
		d, err := eventsLoop(ctx, env, list, sent)
		if err != nil {
			return err
		}
		listRate, eventsRate := float64(enrolled)/dRecord.Seconds(), float64(*units)/d.Seconds()
		fmt.Fprintf(stdout, "%-44s %8.2f s %10.0f events/s  (one exposure for each of the %d units, batches of 10,000, 4 connections);\n%44s the list records %.0f exposures/s: %.2fx the events path's rate\n",
			"POST /v1/events, same exposures", d.Seconds(), eventsRate, *units, "", listRate, listRate/eventsRate)
	}
	fmt.Fprintf(stdout, "\nload after: %s\n", loadAvg())
	return nil
}

// campaignList is n customers as NDJSON, with a country and a number of
// orders each.
func campaignList(n int) []byte {
	countries := []string{"FR", "BE", "DE", "US"}
	b := make([]byte, 0, n*64)
	for i := range n {
		b = fmt.Appendf(b, `{"unit_id": "cust-%08d", "attributes": {"country": %q, "orders": %d}}`+"\n", i, countries[i%4], i%7)
	}
	return b
}

// campaignCSV is campaignList as CSV.
func campaignCSV(n int) []byte {
	countries := []string{"FR", "BE", "DE", "US"}
	b := make([]byte, 0, n*28)
	b = append(b, "unit_id,country,orders:number\n"...)
	for i := range n {
		b = fmt.Appendf(b, "cust-%08d,%s,%d\n", i, countries[i%4], i%7)
	}
	return b
}

// postCSV sends a CSV list for a CSV answer and counts its lines.
func postCSV(ctx context.Context, env *benchEnv, list []byte) (time.Duration, int, error) {
	start := time.Now()
	req, err := http.NewRequestWithContext(ctx, "POST", env.flywheelURL+"/v1/experiments/campaign/assignments", bytes.NewReader(list))
	if err != nil {
		return 0, 0, err
	}
	req.Header.Set("Authorization", "Bearer "+env.adminKey)
	req.Header.Set("Content-Type", "text/csv")
	req.Header.Set("Accept", "text/csv")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, 0, err
	}
	defer res.Body.Close()
	if res.StatusCode != 200 {
		b, _ := io.ReadAll(res.Body)
		return 0, 0, fmt.Errorf("bench: CSV list answered %d: %s", res.StatusCode, b)
	}
	lines, err := countLines(res.Body)
	return time.Since(start), lines, err
}

func countLines(r io.Reader) (int, error) {
	buf := make([]byte, 256<<10)
	n := 0
	for {
		k, err := r.Read(buf)
		n += bytes.Count(buf[:k], []byte{'\n'})
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
}

// forEachLine calls f with the list's first n lines.
func forEachLine(list []byte, n int, f func(line []byte)) {
	sc := bufio.NewScanner(bytes.NewReader(list))
	for i := 0; i < n && sc.Scan(); i++ {
		f(sc.Bytes())
	}
}

// assignLoop assigns the list's first n units with one POST /v1/assign
// each, on 16 connections.
func assignLoop(ctx context.Context, env *benchEnv, list []byte, n int) (time.Duration, error) {
	bodies := make(chan []byte, 1024)
	go func() {
		forEachLine(list, n, func(line []byte) {
			var u struct {
				UnitID     string         `json:"unit_id"`
				Attributes map[string]any `json:"attributes"`
			}
			json.Unmarshal(line, &u)
			b, _ := json.Marshal(map[string]any{"unit_type": "customer", "unit_id": u.UnitID, "attributes": u.Attributes, "experiments": []string{"campaign"}})
			bodies <- b
		})
		close(bodies)
	}()
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 16}}
	var failed atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for b := range bodies {
				req, _ := http.NewRequestWithContext(ctx, "POST", env.flywheelURL+"/v1/assign", bytes.NewReader(b))
				req.Header.Set("Authorization", "Bearer "+env.sdkKey)
				req.Header.Set("Content-Type", "application/json")
				res, err := client.Do(req)
				if err != nil {
					failed.Add(1)
					continue
				}
				io.Copy(io.Discard, res.Body)
				res.Body.Close()
				if res.StatusCode != 200 {
					failed.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	if f := failed.Load(); f > 0 {
		return 0, fmt.Errorf("bench: %d /v1/assign calls failed", f)
	}
	return time.Since(start), nil
}

// eventsLoop sends one exposure per unit of the list, for experiment
// campaign-events, through POST /v1/events in NDJSON batches of 10,000 on
// 4 connections.
func eventsLoop(ctx context.Context, env *benchEnv, list []byte, sent string) (time.Duration, error) {
	batches := make(chan []byte, 8)
	go func() {
		var b []byte
		k := 0
		forEachLine(list, len(list), func(line []byte) {
			i := bytes.Index(line, []byte(`"unit_id": "`)) + len(`"unit_id": "`)
			j := i + bytes.IndexByte(line[i:], '"')
			b = fmt.Appendf(b, `{"id": %q, "type": "exposure", "experiment": "campaign-events", "variant": "control", "unit_type": "customer", "unit_id": %q, "timestamp": %q}`+"\n",
				uuid.Must(uuid.NewV7()).String(), line[i:j], sent)
			if k++; k == 10_000 {
				batches <- b
				b, k = nil, 0
			}
		})
		if k > 0 {
			batches <- b
		}
		close(batches)
	}()
	var failed atomic.Value
	var wg sync.WaitGroup
	start := time.Now()
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for b := range batches {
				for {
					req, _ := http.NewRequestWithContext(ctx, "POST", env.flywheelURL+"/v1/events", bytes.NewReader(b))
					req.Header.Set("Authorization", "Bearer "+env.sdkKey)
					req.Header.Set("Content-Type", "application/x-ndjson")
					res, err := http.DefaultClient.Do(req)
					if err != nil {
						failed.Store(err.Error())
						break
					}
					got, _ := io.ReadAll(res.Body)
					res.Body.Close()
					if res.StatusCode == 503 {
						time.Sleep(100 * time.Millisecond)
						continue
					}
					if res.StatusCode != 200 || !strings.Contains(string(got), `"rejected":[]`) {
						failed.Store(fmt.Sprintf("%d %.300s", res.StatusCode, got))
					}
					break
				}
			}
		}()
	}
	wg.Wait()
	if f := failed.Load(); f != nil {
		return 0, fmt.Errorf("bench: POST /v1/events: %v", f)
	}
	return time.Since(start), nil
}

// loadAvg is the 1, 5 and 15-minute load averages (uptime's figures).
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}
