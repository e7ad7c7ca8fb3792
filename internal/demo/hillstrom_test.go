package demo_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"math/big"
	"net/http"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/flywheel-oss/flywheel"
	"github.com/flywheel-oss/flywheel/analysis"
	"github.com/flywheel-oss/flywheel/internal/apptest"
	"github.com/flywheel-oss/flywheel/internal/demo"
	"github.com/flywheel-oss/flywheel/internal/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// hillstromSHA256 is the checksum of the CSV inside data/hillstrom.csv.gz,
// as data/README.md states it.
const hillstromSHA256 = "ff9e59285e9dc3f5fa3e0975419e6631ea5bdccd65d818991473d2367e02979c"

// TestHillstromData checks the embedded file against its README: the
// checksum, the row count, and the published arm means.
func TestHillstromData(t *testing.T) {
	gz, err := os.ReadFile("data/hillstrom.csv.gz")
	if err != nil {
		t.Fatal(err)
	}
	zr, err := gzip.NewReader(bytes.NewReader(gz))
	if err != nil {
		t.Fatal(err)
	}
	raw, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	if sum := sha256.Sum256(raw); hex.EncodeToString(sum[:]) != hillstromSHA256 {
		t.Errorf("SHA-256 of hillstrom.csv = %x, want %s (data/README.md)", sum, hillstromSHA256)
	}
	rows, err := demo.Hillstrom()
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != demo.HillstromRows {
		t.Fatalf("Hillstrom() = %d rows, want %d", len(rows), demo.HillstromRows)
	}
	type means struct{ n, visit, conversion, spend float64 }
	arms := map[string]*means{"control": {}, "mens": {}, "womens": {}}
	for _, r := range rows {
		m := arms[r.Arm()]
		m.n++
		m.visit += b2f(r.Visit)
		m.conversion += b2f(r.Conversion)
		m.spend += r.Spend
	}
	// The published means, men's / women's / none, as rounded there.
	for _, c := range []struct {
		arm                      string
		visit, conversion, spend string
	}{
		{"mens", "18.28", "1.25", "1.42"},
		{"womens", "15.14", "0.88", "1.08"},
		{"control", "10.62", "0.57", "0.65"},
	} {
		m := arms[c.arm]
		got := []string{pct(m.visit / m.n), pct(m.conversion / m.n), strconv.FormatFloat(m.spend/m.n, 'f', 2, 64)}
		if want := []string{c.visit, c.conversion, c.spend}; !slices.Equal(got, want) {
			t.Errorf("%s: visit %%, conversion %%, spend $ = %v, want %v (published)", c.arm, got, want)
		}
	}
}

func pct(x float64) string { return strconv.FormatFloat(100*x, 'f', 2, 64) }

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// TestHillstromMatchesStats runs the demo's hillstrom-email against a
// server and compares its results, whole and by channel, with the analysis
// module run on sufficient statistics computed here straight from the CSV
// rows, as data/README.md maps them: visit and conversion per arm, spend
// with history as its covariate. Every number must agree to 1e-9
// (relative): the server sums in PostgreSQL, in another order; every text
// (summaries, warnings) must be the same.
func TestHillstromMatchesStats(t *testing.T) {
	srv := apptest.Start(t, appConfig())
	var out bytes.Buffer
	rep, err := demo.Run(context.Background(), demo.Options{URL: srv.URL, Key: apptest.AdminKey, Only: []string{"hillstrom-email"}, Out: &out})
	t.Logf("demo output:\n%s", out.String())
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if rep.Pending != 0 {
		t.Fatalf("Run left %d events pending", rep.Pending)
	}
	rows, err := demo.Hillstrom()
	if err != nil {
		t.Fatal(err)
	}
	// Every row is an exposure and a history event; a visit adds one, a
	// purchase one more.
	want := 2 * len(rows)
	for _, r := range rows {
		want += int(b2f(r.Visit) + b2f(r.Conversion))
	}
	if rep.Events != want || rep.Accepted != want {
		t.Errorf("events sent, accepted = %d, %d, want %d, %d", rep.Events, rep.Accepted, want, want)
	}

	var exp flywheel.Experiment
	getJSON(t, srv, "/v1/experiments/hillstrom-email", &exp)
	var metrics []flywheel.Metric
	for _, k := range exp.Metrics.Keys() {
		var m flywheel.Metric
		getJSON(t, srv, "/v1/metrics/"+k, &m)
		metrics = append(metrics, m)
	}
	if got := exp.Metrics.Keys(); !slices.Equal(got, []string{"visit", "conversion", "spend"}) {
		t.Fatalf("metrics = %v, want visit, conversion, spend", got)
	}

	for _, segment := range []string{"", "channel", "zip_code", "newbie"} {
		t.Run("segment="+segment, func(t *testing.T) {
			path := "/v1/experiments/hillstrom-email/results"
			if segment != "" {
				path += "?segment=" + segment
			}
			var got map[string]any
			getJSON(t, srv, path, &got)
			if got["pending_events"] != 0.0 {
				t.Fatalf("pending_events = %v, want 0", got["pending_events"])
			}
			computed, err := time.Parse(time.RFC3339Nano, got["computed_at"].(string))
			if err != nil {
				t.Fatal(err)
			}
			in := hillstromInput(rows, exp, metrics, segment, computed)
			res := analysis.Analyze(in, analysis.Options{Segment: segment})
			var want map[string]any
			raw, err := json.Marshal(res)
			if err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal(raw, &want); err != nil {
				t.Fatal(err)
			}
			for _, m := range []map[string]any{got, want} {
				for _, k := range []string{"computed_at", "as_of", "lag_seconds", "pending_events"} {
					delete(m, k)
				}
			}
			var worst float64
			for _, d := range diffJSON("", want, got, &worst) {
				t.Error(d)
			}
			t.Logf("largest relative difference: %.3g", worst)
			if units := got["units"].(float64); units != demo.HillstromRows {
				t.Errorf("units = %v, want %d", units, demo.HillstromRows)
			}
			if segment != "" && len(got["segments"].(map[string]any)) < 2 {
				t.Errorf("segments by %s = %v, want one per value", segment, got["segments"])
			}
		})
	}
	for _, metric := range []string{"spend", "visit"} {
		t.Run("uplift metric="+metric, func(t *testing.T) { checkHillstromUplift(t, srv, rows, metric) })
	}
}

// hillstromInput is the analysis input of hillstrom-email computed from
// the rows, by arm and, when segment is set, by arm and segment value. Sums
// of money are exact (big.Rat) before they become float64.
func hillstromInput(rows []demo.HillstromRow, exp flywheel.Experiment, metrics []flywheel.Metric, segment string, now time.Time) analysis.Input {
	in := analysis.Input{Experiment: exp, Metrics: metrics, ComputedAt: now}
	type key struct{ variant, segment string }
	type sums struct {
		n, visits, conversions                int64
		spend, spend2, hist, hist2, histSpend big.Rat
	}
	groups := map[key]*sums{}
	var order []key
	add := func(k key, r demo.HillstromRow) {
		s := groups[k]
		if s == nil {
			s = &sums{}
			groups[k] = s
			order = append(order, k)
		}
		y, x := rat(r.Spend), rat(r.History)
		s.n++
		s.visits += int64(b2f(r.Visit))
		s.conversions += int64(b2f(r.Conversion))
		s.spend.Add(&s.spend, y)
		s.spend2.Add(&s.spend2, new(big.Rat).Mul(y, y))
		s.hist.Add(&s.hist, x)
		s.hist2.Add(&s.hist2, new(big.Rat).Mul(x, x))
		s.histSpend.Add(&s.histSpend, new(big.Rat).Mul(x, y))
	}
	for _, r := range rows {
		add(key{r.Arm(), ""}, r)
		if segment != "" {
			add(key{r.Arm(), segmentValue(r, segment)}, r)
		}
	}
	f := func(r *big.Rat) float64 { v, _ := r.Float64(); return v }
	for _, k := range order {
		s := groups[k]
		arm := analysis.ArmCounts{Variant: k.variant, Segment: k.segment, Units: s.n}
		n, v, c := s.n, float64(s.visits), float64(s.conversions)
		stats := []analysis.MetricStats{
			// visit: no pre-period visits (x = 0).
			{Metric: "visit", N: n, Conversions: s.visits, Sum: v, SumSq: v},
			// conversion: every customer has the history purchase before
			// exposure (x = 1).
			{Metric: "conversion", N: n, Conversions: s.conversions, Sum: c, SumSq: c,
				SumX: float64(n), SumXSq: float64(n), SumXY: c},
			// spend, with history as x.
			{Metric: "spend", N: n, Sum: f(&s.spend), SumSq: f(&s.spend2),
				SumX: f(&s.hist), SumXSq: f(&s.hist2), SumXY: f(&s.histSpend)},
		}
		for i := range stats {
			stats[i].Variant, stats[i].Segment = k.variant, k.segment
		}
		if k.segment == "" {
			in.Arms = append(in.Arms, arm)
			in.Stats = append(in.Stats, stats...)
		} else {
			in.SegmentArms = append(in.SegmentArms, arm)
			in.SegmentStats = append(in.SegmentStats, stats...)
		}
	}
	return in
}

// segmentValue is the row's value of an exposure attribute, as the
// results group it (the attribute's JSON value as text).
func segmentValue(r demo.HillstromRow, attribute string) string {
	switch attribute {
	case "channel":
		return r.Channel
	case "zip_code":
		return r.ZipCode
	case "newbie":
		return strconv.Itoa(int(b2f(r.Newbie)))
	case "history_segment":
		return r.HistorySegment
	}
	panic("no attribute " + attribute)
}

func rat(x float64) *big.Rat {
	// The CSV's decimals, not the binary float64 nearest to them.
	r, ok := new(big.Rat).SetString(strconv.FormatFloat(x, 'f', -1, 64))
	if !ok {
		panic(x)
	}
	return r
}

// diffJSON lists where got differs from want: numbers by more than 1e-9
// relative (worst receives the largest relative difference seen), anything
// else at all.
func diffJSON(path string, want, got any, worst *float64) []string {
	switch w := want.(type) {
	case map[string]any:
		g, ok := got.(map[string]any)
		if !ok {
			return []string{fmt.Sprintf("%s = %v, want an object", path, got)}
		}
		var out []string
		for k := range g {
			if _, ok := w[k]; !ok {
				out = append(out, fmt.Sprintf("%s.%s = %v, not in the computed results", path, k, g[k]))
			}
		}
		for k, wv := range w {
			gv, ok := g[k]
			if !ok {
				out = append(out, fmt.Sprintf("%s.%s missing, want %v", path, k, wv))
				continue
			}
			out = append(out, diffJSON(path+"."+k, wv, gv, worst)...)
		}
		return out
	case []any:
		g, ok := got.([]any)
		if !ok || len(g) != len(w) {
			return []string{fmt.Sprintf("%s = %v, want %v", path, got, want)}
		}
		var out []string
		for i := range w {
			out = append(out, diffJSON(fmt.Sprintf("%s[%d]", path, i), w[i], g[i], worst)...)
		}
		return out
	case float64:
		g, ok := got.(float64)
		if !ok {
			return []string{fmt.Sprintf("%s = %v, want %v", path, got, want)}
		}
		d := math.Abs(g - w)
		if d == 0 {
			return nil
		}
		rel := d / math.Max(math.Abs(g), math.Abs(w))
		*worst = math.Max(*worst, rel)
		if rel > 1e-9 {
			return []string{fmt.Sprintf("%s = %v, want %v (relative difference %.2g)", path, g, w, rel)}
		}
		return nil
	}
	if fmt.Sprint(want) != fmt.Sprint(got) {
		return []string{fmt.Sprintf("%s = %v, want %v", path, got, want)}
	}
	return nil
}

// getJSON reads path with the admin key into out.
func getJSON(tb testing.TB, srv *apptest.Server, path string, out any) {
	tb.Helper()
	raw := srv.Admin(tb, http.StatusOK, http.MethodGet, path, nil)
	if err := json.Unmarshal(raw, out); err != nil {
		tb.Fatalf("GET %s: %v: %s", path, err, raw)
	}
}
