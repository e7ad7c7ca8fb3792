package store_test

import (
	"context"
	"testing"
	"time"
)

// TestAggregationLeader: the server whose cycle ended last leads, until
// its record is older than the takeover time or it resigns; another
// server's cycle takes the lead, and only the leader can resign; a
// background aggregator's cycle defers to a leader under the lock.
func TestAggregationLeader(t *testing.T) {
	ctx := context.Background()
	dbs := twoProcesses(t)
	led := func(i int, takeover time.Duration) bool {
		t.Helper()
		l, err := dbs[i].AggregationLed(ctx, takeover)
		if err != nil {
			t.Fatalf("AggregationLed: %v", err)
		}
		return l
	}
	if led(0, time.Hour) || led(1, time.Hour) {
		t.Error("a server is led before any cycle")
	}
	aggregateAll(t, dbs[0]) // nothing queued: a cycle all the same
	if led(0, time.Hour) {
		t.Error("the server that ran the last cycle is led")
	}
	if !led(1, time.Hour) {
		t.Error("the other server is not led after the first one's cycle")
	}
	time.Sleep(50 * time.Millisecond)
	if led(1, 10*time.Millisecond) {
		t.Error("led by a cycle older than the takeover time")
	}
	aggregateAll(t, dbs[1])
	if !led(0, time.Hour) || led(1, time.Hour) {
		t.Error("the lead did not pass to the server that ran the last cycle")
	}
	if err := dbs[0].ResignAggregation(ctx); err != nil {
		t.Fatal(err)
	}
	if !led(0, time.Hour) {
		t.Error("a server that does not lead gave the lead up")
	}
	if err := dbs[1].ResignAggregation(ctx); err != nil {
		t.Fatal(err)
	}
	if led(0, time.Hour) {
		t.Error("led after the leader resigned")
	}
	aggregateAll(t, dbs[0])
	if !led(1, time.Hour) {
		t.Error("a resigned server's next cycle does not lead")
	}

	// A background aggregator asks again under the lock: while another
	// server leads it takes nothing; once the lead is older than its
	// takeover time, it runs the cycle and leads.
	mustWrite(t, dbs[1], track("lead-1", "purchase", aggBase))
	rep, err := dbs[1].AggregateUnlessLed(ctx, time.Hour)
	if err != nil || !rep.Deferred || rep.Skipped || rep.Queued != 0 {
		t.Errorf("AggregateUnlessLed while led = %+v, %v; want it deferred, nothing taken", rep, err)
	}
	time.Sleep(50 * time.Millisecond)
	rep, err = dbs[1].AggregateUnlessLed(ctx, 10*time.Millisecond)
	if err != nil || rep.Deferred || rep.Queued != 1 {
		t.Errorf("AggregateUnlessLed after the takeover time = %+v, %v; want the queue row taken", rep, err)
	}
	if !led(0, time.Hour) {
		t.Error("the server that took over does not lead")
	}
}
