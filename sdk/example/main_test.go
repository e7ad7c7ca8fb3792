package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/flywheel-oss/flywheel/internal/app"
	"github.com/flywheel-oss/flywheel/internal/apptest"
	"github.com/flywheel-oss/flywheel/internal/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// TestRun runs the example against a real server with one experiment.
func TestRun(t *testing.T) {
	srv := apptest.Start(t, app.Config{})
	for _, r := range []struct {
		path string
		body any
		want int
	}{
		{"/v1/experiments", map[string]any{
			"key":        "checkout-button",
			"name":       "Green button",
			"hypothesis": "Green sells",
			"unit_type":  "customer",
			"variants":   []any{map[string]any{"key": "control", "weight": 0.5}, map[string]any{"key": "green", "weight": 0.5}},
			"traffic":    1.0,
			"targeting":  map[string]any{"country": map[string]any{"$in": []any{"FR", "BE"}}},
			"metrics":    map[string]any{},
			"analysis":   "fixed",
		}, 201},
		{"/v1/experiments/checkout-button/start", nil, 200},
	} {
		raw, _ := json.Marshal(r.body)
		req, _ := http.NewRequest("POST", srv.URL+r.path, bytes.NewReader(raw))
		req.Header.Set("Authorization", "Bearer "+apptest.AdminKey)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != r.want {
			t.Fatalf("POST %s = %d, want %d", r.path, res.StatusCode, r.want)
		}
	}
	env := map[string]string{"FLYWHEEL_URL": srv.URL, "FLYWHEEL_SDK_KEY": apptest.SDKKey}
	var out bytes.Buffer
	if err := run(context.Background(), func(k string) string { return env[k] }, &out); err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	got := out.String()
	// 10 customers, two thirds targeted (FR, BE): 7 exposures, 5 purchases.
	if !strings.Contains(got, "enrolled=true reason=bucket") || !strings.Contains(got, "reason=targeting") ||
		!strings.Contains(got, "events: 12 recorded, 12 sent, 0 rejected, 0 dropped") {
		t.Errorf("output:\n%s", got)
	}
}

func TestRunNeedsEnv(t *testing.T) {
	if err := run(context.Background(), func(string) string { return "" }, &bytes.Buffer{}); err == nil {
		t.Error("run without FLYWHEEL_URL and FLYWHEEL_SDK_KEY succeeded")
	}
}
