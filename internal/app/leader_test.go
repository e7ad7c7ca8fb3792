package app_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/flywheel-oss/flywheel/internal/app"
	"github.com/flywheel-oss/flywheel/internal/apptest"
	"github.com/flywheel-oss/flywheel/internal/pgtest"
	"github.com/flywheel-oss/flywheel/store"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// TestAggregationLeadership: two servers on one database, ingesting
// through both; the background cycles settle on one of them, the other
// defers to it; when the leader closes, the other takes over at its next
// ticks and the results count every event.
func TestAggregationLeadership(t *testing.T) {
	ctx := context.Background()
	url := pgtest.NewDatabase(t)
	regs := [2]*prometheus.Registry{prometheus.NewRegistry(), prometheus.NewRegistry()}
	var srvs [2]*apptest.Server
	for i := range srvs {
		srvs[i] = apptest.Start(t, app.Config{DatabaseURL: url, AggregateEvery: 20 * time.Millisecond, Registry: regs[i]})
	}
	cycles := func(i int, outcome string) float64 {
		t.Helper()
		return cycleOutcomes(t, regs[i], outcome)
	}
	srvs[0].Admin(t, http.StatusCreated, "POST", "/v1/experiments", map[string]any{"key": "lead", "unit_type": "customer",
		"variants": []map[string]any{{"key": "a", "weight": 0.5}, {"key": "b", "weight": 0.5}}})
	srvs[0].Admin(t, http.StatusOK, "POST", "/v1/experiments/lead/start", nil)
	n := 0
	send := func(srv *apptest.Server, units int) {
		t.Helper()
		// A server learns of the experiment created through the other one
		// by NOTIFY: until it has, it rejects the exposures, and they are
		// sent again.
		for deadline := time.Now().Add(5 * time.Second); ; {
			var events []map[string]any
			for i := range units {
				events = append(events, map[string]any{"id": uuid.NewString(), "type": "exposure", "unit_type": "customer",
					"unit_id": fmt.Sprintf("c-%d", n+i), "experiment": "lead", "variant": "a"})
			}
			var ack struct {
				Accepted int `json:"accepted"`
			}
			if err := json.Unmarshal(srv.Admin(t, http.StatusOK, "POST", "/v1/events", map[string]any{"events": events}), &ack); err != nil {
				t.Fatal(err)
			}
			if ack.Accepted == units {
				n += units
				return
			}
			if ack.Accepted != 0 || time.Now().After(deadline) {
				t.Fatalf("POST /v1/events accepted %d of %d", ack.Accepted, units)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	// Both tick: one of them ends up leading, and then only its cycles run.
	leader := -1
	for range 50 {
		ok0, ok1 := cycles(0, "ok"), cycles(1, "ok")
		send(srvs[0], 5)
		send(srvs[1], 5)
		time.Sleep(100 * time.Millisecond)
		if d0, d1 := cycles(0, "ok")-ok0, cycles(1, "ok")-ok1; (d0 > 0) != (d1 > 0) {
			if leader = 0; d1 > 0 {
				leader = 1
			}
			break
		}
	}
	if leader < 0 {
		t.Fatal("in 50 rounds of 100 ms, both servers or neither ran cycles in each")
	}
	follower := 1 - leader
	okL, okF, deferredF := cycles(leader, "ok"), cycles(follower, "ok"), cycles(follower, "deferred")
	for range 20 {
		send(srvs[0], 5)
		send(srvs[1], 5)
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond)
	if got := cycles(follower, "ok"); got != okF {
		t.Errorf("the follower ran %v cycles while the leader was up, want none", got-okF)
	}
	if got := cycles(leader, "ok"); got < okL+3 {
		t.Errorf("the leader ran %v cycles in 20 rounds of ticks, want at least 3", got-okL)
	}
	if got := cycles(follower, "deferred"); got < deferredF+3 {
		t.Errorf("the follower deferred %v times, want at least 3", got-deferredF)
	}
	// The leader closes: the follower takes over well before the takeover
	// time (5 s), and the results count every unit.
	srvs[leader].HTTP.Close()
	if err := srvs[leader].App.Close(ctx); err != nil {
		t.Fatal(err)
	}
	closed := time.Now()
	okF = cycles(follower, "ok")
	send(srvs[follower], 5)
	for cycles(follower, "ok") == okF {
		if time.Since(closed) > 3*time.Second {
			t.Fatal("the follower did not take over within 3 s of the leader's close")
		}
		time.Sleep(10 * time.Millisecond)
	}
	var doc struct {
		Units         int   `json:"units"`
		PendingEvents int64 `json:"pending_events"`
	}
	for deadline := time.Now().Add(10 * time.Second); ; {
		if err := json.Unmarshal(srvs[follower].Admin(t, http.StatusOK, "GET", "/v1/experiments/lead/results", nil), &doc); err != nil {
			t.Fatal(err)
		}
		if doc.Units == n && doc.PendingEvents == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("results count %d units with %d events pending, want %d and none", doc.Units, doc.PendingEvents, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestFollowerReportsLag: a server that defers to another server leading
// aggregation still reports the lag and the queue from the database in
// its /metrics gauges, as the leader would, not what it last saw itself.
func TestFollowerReportsLag(t *testing.T) {
	ctx := context.Background()
	url := pgtest.NewDatabase(t)
	reg := prometheus.NewRegistry()
	srv := apptest.Start(t, app.Config{DatabaseURL: url, AggregateEvery: 20 * time.Millisecond, Registry: reg})
	gauge := func(name string) float64 {
		t.Helper()
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() == name {
				return mf.GetMetric()[0].GetGauge().GetValue()
			}
		}
		return 0
	}
	srv.Admin(t, http.StatusCreated, "POST", "/v1/experiments", map[string]any{"key": "lag", "unit_type": "customer",
		"variants": []map[string]any{{"key": "a", "weight": 0.5}, {"key": "b", "weight": 0.5}}})
	srv.Admin(t, http.StatusOK, "POST", "/v1/experiments/lag/start", nil)
	// Another server leads from now on, and runs no cycle. Its record is
	// written under the aggregation lock, as a cycle's is: a cycle of
	// this server's running meanwhile would otherwise record its own lead
	// over it when it ends.
	func() {
		conn, err := srv.App.DB.Pool().Acquire(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Release() // before the pool closes, even on a failure
		if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock($1)`, store.AggregationLock); err != nil {
			t.Fatal(err)
		}
		if _, err := conn.Exec(ctx, `INSERT INTO agg_leader (id, server, at) VALUES (1, 'another', clock_timestamp())
			ON CONFLICT (id) DO UPDATE SET server = EXCLUDED.server, at = EXCLUDED.at`); err != nil {
			t.Fatal(err)
		}
		if _, err := conn.Exec(ctx, `SELECT pg_advisory_unlock($1)`, store.AggregationLock); err != nil {
			t.Fatal(err)
		}
	}()
	var events []map[string]any
	for i := range 10 {
		events = append(events, map[string]any{"id": uuid.NewString(), "type": "exposure", "unit_type": "customer",
			"unit_id": fmt.Sprintf("c-%d", i), "experiment": "lag", "variant": "a"})
	}
	srv.Admin(t, http.StatusOK, "POST", "/v1/events", map[string]any{"events": events})
	for start := time.Now(); gauge("flywheel_aggregate_lag_seconds") <= 0 || gauge("flywheel_aggregate_queue_rows") < 1; {
		if time.Since(start) > 3*time.Second {
			t.Fatalf("after 3 s of deferring, the gauges say lag %vs and %v queue rows; want the pending events' lag and their queue row",
				gauge("flywheel_aggregate_lag_seconds"), gauge("flywheel_aggregate_queue_rows"))
		}
		time.Sleep(20 * time.Millisecond)
	}
	// The queue row still there says no cycle took it: the server deferred.
	if deferred := cycleOutcomes(t, reg, "deferred"); deferred < 1 {
		t.Errorf("the server deferred %v times, want at least once", deferred)
	}
}

// cycleOutcomes reads a server's flywheel_aggregate_cycles_total of one
// outcome (ok, skipped, deferred, error).
func cycleOutcomes(t *testing.T, reg *prometheus.Registry, outcome string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "flywheel_aggregate_cycles_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "outcome" && l.GetValue() == outcome {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}
