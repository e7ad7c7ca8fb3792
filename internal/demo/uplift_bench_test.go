package demo_test

import (
	"bytes"
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/flywheel-oss/flywheel/internal/apptest"
	"github.com/flywheel-oss/flywheel/internal/demo"
)

// BenchmarkHillstromUplift times GET /uplift on the Hillstrom e-mail test
// (64,000 customers; spend and visit by channel, zip_code, newbie and
// history_segment; the target is ≤ 2 s) and, in the same run on
// the same server and data, GET /results (whole and by channel) for the
// ratio recorded in BENCHMARKS.md:
//
//	go test -run '^$' -bench BenchmarkHillstromUplift -benchtime 10x ./internal/demo/
//
// Loading the data through `flywheel demo` takes about 15 s first.
func BenchmarkHillstromUplift(b *testing.B) {
	srv := apptest.Start(b, appConfig())
	var out bytes.Buffer
	if _, err := demo.Run(context.Background(), demo.Options{URL: srv.URL, Key: apptest.AdminKey, Only: []string{"hillstrom-email"}, Out: &out}); err != nil {
		b.Fatalf("demo: %v\n%s", err, out.String())
	}
	const exp = "/v1/experiments/hillstrom-email"
	for _, bb := range []struct{ name, path string }{
		{"uplift spend", exp + "/uplift?metric=spend&by=channel,zip_code,newbie,history_segment"},
		{"uplift visit", exp + "/uplift?metric=visit&by=channel,zip_code,newbie,history_segment"},
		{"results", exp + "/results"},
		{"results segment=channel", exp + "/results?segment=channel"},
	} {
		b.Run(bb.name, func(b *testing.B) {
			srv.Admin(b, http.StatusOK, http.MethodGet, bb.path, nil) // warm
			var total time.Duration
			for b.Loop() {
				start := time.Now()
				srv.Admin(b, http.StatusOK, http.MethodGet, bb.path, nil)
				total += time.Since(start)
			}
			b.ReportMetric(float64(total.Milliseconds())/float64(b.N), "ms/req")
		})
	}
}
