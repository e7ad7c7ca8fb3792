package main

import (
	"bytes"
	"context"
	"encoding/csv"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/flywheel-oss/flywheel/internal/app"
	"github.com/flywheel-oss/flywheel/internal/apptest"
)

// TestAssignCommand runs flywheel assign against a running server: a CSV
// list in, a CSV answer out in the same order, a progress bar on stderr, a
// summary per variant on stdout; exposures recorded once across two runs;
// a bad list exits non-zero with the server's error naming the line, and
// leaves no answer file.
func TestAssignCommand(t *testing.T) {
	srv := apptest.Start(t, app.Config{AggregateEvery: -1})
	exp := map[string]any{
		"key": "promo", "name": "Promo", "unit_type": "customer", "traffic": 1.0,
		"variants":  []any{map[string]any{"key": "control", "weight": 0.5}, map[string]any{"key": "discount", "weight": 0.5}},
		"targeting": map[string]any{"country": "FR"},
	}
	srv.Admin(t, 201, "POST", "/v1/experiments", exp)
	srv.Admin(t, 200, "POST", "/v1/experiments/promo/start", nil)

	dir := t.TempDir()
	in := filepath.Join(dir, "customers.csv")
	var list strings.Builder
	list.WriteString("unit_id,country\n")
	for i := range 1000 {
		fmt.Fprintf(&list, "c-%d,%s\n", i, []string{"FR", "DE"}[i%2])
	}
	if err := os.WriteFile(in, []byte(list.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "assigned.csv")
	getenv := env("FLYWHEEL_URL", srv.URL, "FLYWHEEL_KEY", apptest.AdminKey)
	assign := func(args ...string) (string, string, error) {
		var stdout, stderr bytes.Buffer
		err := run(context.Background(), append([]string{"assign"}, args...), getenv, &stdout, &stderr)
		return stdout.String(), stderr.String(), err
	}
	stdout, stderr, err := assign("--experiment", "promo", "--in", in, "--out", out, "--record-exposures", "--sent-at", "2030-01-01T00:00:00Z")
	if err == nil || !strings.Contains(err.Error(), "sent_at") {
		t.Errorf("sent_at years ahead: err = %v, want the server's sent_at error", err)
	}
	stdout, stderr, err = assign("--experiment", "promo", "--in", in, "--out", out, "--record-exposures")
	if err != nil {
		t.Fatalf("flywheel assign: %v\n%s", err, stderr)
	}
	if !strings.Contains(stderr, "100%") || !strings.Contains(stderr, "1001 rows") {
		t.Errorf("progress on stderr = %q, want 100%% and 1001 rows (header included)", stderr)
	}
	raw, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	recs, err := csv.NewReader(bytes.NewReader(raw)).ReadAll()
	if err != nil || len(recs) != 1001 || strings.Join(recs[0], ",") != "unit_id,variant,enrolled,reason" {
		t.Fatalf("answer: %d records (%v): %.200s", len(recs), err, raw)
	}
	counts := map[string]int{}
	for i, rec := range recs[1:] {
		if rec[0] != fmt.Sprintf("c-%d", i) {
			t.Fatalf("answer line %d is %v, want unit c-%d: the order is the list's", i+2, rec, i)
		}
		if (i%2 == 0) != (rec[2] == "true") {
			t.Errorf("%v: FR units are enrolled, DE units not", rec)
		}
		counts[rec[1]+"/"+rec[3]]++
	}
	for _, want := range []string{
		"assigned 1000 units",
		fmt.Sprintf("control %10d", counts["control/bucket"]),
		fmt.Sprintf("discount %10d", counts["discount/bucket"]),
		"(targeting 500)", "exposures: 500 recorded, 0 already recorded before",
	} {
		if !strings.Contains(strings.Join(strings.Fields(stdout), " "), strings.Join(strings.Fields(want), " ")) {
			t.Errorf("summary lacks %q:\n%s", want, stdout)
		}
	}
	// Again: nothing recorded twice.
	stdout, _, err = assign("--experiment", "promo", "--in", in, "--out", out, "--record-exposures")
	if err != nil || !strings.Contains(stdout, "exposures: 0 recorded, 500 already recorded before") {
		t.Errorf("second run: %v\n%s", err, stdout)
	}
	// A bad list: the server's error with the line, exit non-zero, no answer file.
	bad := filepath.Join(dir, "bad.csv")
	os.WriteFile(bad, []byte("unit_id,country\nc-1,FR\n,FR\n"), 0o644)
	badOut := filepath.Join(dir, "bad-answer.ndjson")
	_, _, err = assign("--experiment", "promo", "--in", bad, "--out", badOut)
	if err == nil || !strings.Contains(err.Error(), "line 3: unit_id is empty") || exitCode(err) == 0 {
		t.Errorf("bad list: err = %v, want the server's error naming line 3", err)
	}
	if _, statErr := os.Stat(badOut); !os.IsNotExist(statErr) {
		t.Errorf("a refused list left %s behind", badOut)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 3 {
		t.Errorf("files left in the directory: %v (a .part file?)", entries)
	}
	// Usage mistakes exit 2.
	for _, args := range [][]string{{"--in", in, "--out", out}, {"--experiment", "promo", "--in", in, "--out", out, "--sent-at", "2026-01-01T00:00:00Z"}} {
		if _, _, err := assign(args...); exitCode(err) != 2 {
			t.Errorf("assign %v: err %v, want a usage error", args, err)
		}
	}
}
