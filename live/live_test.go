package live_test

import (
	"context"
	"testing"

	"github.com/flywheel-oss/flywheel"
	"github.com/flywheel-oss/flywheel/assign"
	"github.com/flywheel-oss/flywheel/live"
)

// fakeSource is a Source at a revision the test moves.
type fakeSource struct{ rev int64 }

var _ live.Source = (*fakeSource)(nil)

func (f *fakeSource) ListLiveExperiments(context.Context) ([]flywheel.Experiment, int64, error) {
	return nil, f.rev, nil
}
func (f *fakeSource) ConfigRevision(context.Context) (int64, error)            { return f.rev, nil }
func (f *fakeSource) AllAudiences(context.Context) (assign.Audiences, error)   { return nil, nil }
func (f *fakeSource) LiveHoldouts(context.Context) ([]flywheel.Holdout, error) { return nil, nil }

// closed reports whether ch is closed.
func closed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// TestChanged: a State's Changed channel closes when, and only when, a
// newer State replaces it; every holder of the old one sees it.
func TestChanged(t *testing.T) {
	ctx := context.Background()
	src := &fakeSource{rev: 1}
	r := live.New(src)
	if err := r.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	first := r.Current()
	if closed(first.Changed()) {
		t.Fatal("Changed of the current state is closed")
	}
	if err := r.Refresh(ctx); err != nil { // same revision: no new state
		t.Fatal(err)
	}
	if r.Current() != first || closed(first.Changed()) {
		t.Fatal("a Refresh without a new revision replaced the state or closed Changed")
	}
	src.rev = 2
	if err := r.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	second := r.Current()
	if second.Revision != 2 || !closed(first.Changed()) || closed(second.Changed()) {
		t.Errorf("after revision 2: current %d, first closed %v, second closed %v; want 2, true, false",
			second.Revision, closed(first.Changed()), closed(second.Changed()))
	}
}
