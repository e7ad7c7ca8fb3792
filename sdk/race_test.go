package sdk_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/flywheel-oss/flywheel/sdk"
)

// TestConcurrentUse runs Assign, Track, Identify, Stats and Flush from
// many goroutines while the config changes under them and Close is called
// in the middle (run it with -race). Every event is accounted for once, and
// the server holds exactly the events the client counts as sent.
func TestConcurrentUse(t *testing.T) {
	f := newFakeServer(t, testConfig)
	c := newTestClient(t, f.URL(), sdk.WithBatchSize(64), sdk.WithBufferSize(1<<16),
		sdk.WithPollInterval(time.Millisecond), sdk.WithExposureCacheSize(256))
	ctx := context.Background()
	const goroutines, perGoroutine = 32, 400
	var wg sync.WaitGroup
	start := make(chan struct{})
	for g := range goroutines {
		wg.Go(func() {
			<-start
			attrs := map[string]any{"g": float64(g)}
			for i := range perGoroutine {
				u := sdk.Unit{CustomerID: fmt.Sprintf("c-%d", i%100), DeviceID: fmt.Sprintf("d-%d-%d", g, i%10), Attributes: attrs}
				a := c.Assign(ctx, u, "exp")
				if a.Reason != sdk.ReasonBucket && a.Reason != sdk.ReasonOverride {
					t.Errorf("Assign = %+v", a)
					return
				}
				c.Assign(ctx, u, "new")
				if err := c.Track(ctx, u, "purchase", float64(i), map[string]any{"i": i}); err != nil && !errors.Is(err, sdk.ErrClosed) {
					t.Error(err)
				}
				if i%50 == 0 {
					c.Identify(ctx, u.DeviceID, u.CustomerID)
					c.Stats()
					c.Flush(ctx)
				}
			}
		})
	}
	wg.Go(func() { // the config moves while units are assigned
		<-start
		for rev := int64(2); rev < 20; rev++ {
			if rev%2 == 0 {
				f.setConfig(rev, configV2)
			} else {
				f.setConfig(rev, testConfig)
			}
			time.Sleep(time.Millisecond)
		}
	})
	closed := make(chan error, 1)
	wg.Go(func() {
		<-start
		time.Sleep(20 * time.Millisecond)
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		closed <- c.Close(cctx)
	})
	close(start)
	wg.Wait()
	if err := <-closed; err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := c.Close(ctx); err != nil {
		t.Errorf("second Close = %v, want the first's nil", err)
	}
	s := c.Stats()
	checkBalance(t, s)
	if s.Pending != 0 || s.Dropped != 0 || s.Rejected != 0 {
		t.Errorf("stats %+v: want nothing pending, dropped or rejected", s)
	}
	if got := uint64(len(f.events())); got != s.Sent {
		t.Errorf("the server stored %d events, the client counts %d sent", got, s.Sent)
	}
	if s.Queued == 0 {
		t.Error("nothing was recorded before Close")
	}
}
