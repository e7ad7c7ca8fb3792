// Package live keeps the compiled assignment configuration in memory: the
// assign snapshot of every running experiment, the status of every known
// experiment, and the SDK config document with its ETag. Assignments read
// it without touching the database; it is rebuilt when the configuration
// revision moves (after each write through this process at once, and by
// polling for writes through other processes).
//
// Each State is replaced, never changed: a reader that holds one waits on
// its Changed channel, which is closed when a newer State takes its place,
// so any number of SDK streams learn of a change at once without a
// goroutine or a subscription of their own.
package live

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/flywheel-oss/flywheel"
	"github.com/flywheel-oss/flywheel/assign"
)

// State is one immutable configuration.
type State struct {
	Revision  int64
	Snapshot  *assign.Snapshot
	SDKConfig []byte // JSON of assign.Config with the running experiments
	ETag      string
	// experiments holds every non-archived experiment by key.
	experiments map[string]*flywheel.Experiment
	running     []string // running experiment keys in key order
	// changed is closed when a newer State replaces this one.
	changed chan struct{}
	// holdouts holds every non-archived holdout as its analysed
	// experiment, by analysis key ("holdout:" + key).
	holdouts map[string]*flywheel.Experiment
}

// Exposable returns what an exposure may name: a known, non-archived
// experiment by key, or a non-archived holdout by its analysis key
// ("holdout:" + key) as the two-arm experiment its results read.
func (s *State) Exposable(key string) (*flywheel.Experiment, bool) {
	if e, ok := s.experiments[key]; ok {
		return e, ok
	}
	e, ok := s.holdouts[key]
	return e, ok
}

// Changed returns a channel that is closed when a newer State replaces
// this one in its Registry; then Current returns the newer one (or a newer
// one still). It is never closed for a State that stays current.
func (s *State) Changed() <-chan struct{} { return s.changed }

// Experiment returns a known, non-archived experiment by key.
func (s *State) Experiment(key string) (*flywheel.Experiment, bool) {
	e, ok := s.experiments[key]
	return e, ok
}

// Running returns the keys of the running experiments, in key order.
func (s *State) Running() []string { return s.running }

// Source is what the registry reads experiments from.
type Source interface {
	ListLiveExperiments(ctx context.Context) ([]flywheel.Experiment, int64, error)
	ConfigRevision(ctx context.Context) (int64, error)
	// AllAudiences returns every saved audience's condition, archived
	// ones included, by key: what targeting references resolve to.
	AllAudiences(ctx context.Context) (assign.Audiences, error)
	// LiveHoldouts returns every holdout that is not archived.
	LiveHoldouts(ctx context.Context) ([]flywheel.Holdout, error)
}

// Registry holds the current State.
type Registry struct {
	src Source
	cur atomic.Pointer[State]
	mu  sync.Mutex // serialises rebuilds
}

// New returns a registry; call Refresh before serving.
func New(src Source) *Registry { return &Registry{src: src} }

// Current returns the current state (nil before the first Refresh).
func (r *Registry) Current() *State { return r.cur.Load() }

// Refresh rebuilds the state if the stored revision is newer than the
// current one.
func (r *Registry) Refresh(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if cur := r.cur.Load(); cur != nil {
		rev, err := r.src.ConfigRevision(ctx)
		if err != nil {
			return err
		}
		if rev <= cur.Revision {
			return nil
		}
	}
	exps, rev, err := r.src.ListLiveExperiments(ctx)
	if err != nil {
		return err
	}
	// Read after the experiments: audiences are never deleted, so every
	// audience they reference is there. One changed in between moved the
	// revision, and the next Refresh rebuilds.
	auds, err := r.src.AllAudiences(ctx)
	if err != nil {
		return err
	}
	// Holdouts too: one changed since moved the revision.
	hs, err := r.src.LiveHoldouts(ctx)
	if err != nil {
		return err
	}
	st, err := BuildWithHoldouts(exps, auds, hs, rev)
	if err != nil {
		return err
	}
	r.publish(st)
	return nil
}

// publish makes st current and wakes every reader of the one it replaces.
// Callers hold mu.
func (r *Registry) publish(st *State) {
	if old := r.cur.Swap(st); old != nil {
		close(old.changed)
	}
}

// Build compiles a state from experiments at a revision.
func Build(exps []flywheel.Experiment, rev int64) (*State, error) {
	return BuildWithAudiences(exps, nil, rev)
}

// BuildWithAudiences compiles a state from experiments and the saved
// audiences their targeting may reference. The SDK config carries the
// audiences the running experiments use, directly or through one another,
// and no other.
func BuildWithAudiences(exps []flywheel.Experiment, auds assign.Audiences, rev int64) (*State, error) {
	return BuildWithHoldouts(exps, auds, nil, rev)
}

// BuildWithHoldouts is BuildWithAudiences with the holdouts that are not
// archived: the running ones go into the SDK config (assign.Config's
// Holdouts), and every one may be named by exposures under its analysis
// key.
func BuildWithHoldouts(exps []flywheel.Experiment, auds assign.Audiences, hs []flywheel.Holdout, rev int64) (*State, error) {
	st := &State{Revision: rev, experiments: make(map[string]*flywheel.Experiment, len(exps)), changed: make(chan struct{})}
	cfg := assign.Config{Revision: rev, Experiments: []assign.Experiment{}}
	for i := range exps {
		e := &exps[i]
		st.experiments[e.Key] = e
		if e.Status == flywheel.StatusRunning {
			cfg.Experiments = append(cfg.Experiments, e.Assignable())
			st.running = append(st.running, e.Key)
			for _, k := range assign.ConditionAudiences(e.Targeting, auds) {
				if cond, ok := auds[k]; ok {
					if cfg.Audiences == nil {
						cfg.Audiences = assign.Audiences{}
					}
					cfg.Audiences[k] = cond
				}
			}
		}
	}
	for i := range hs {
		h := &hs[i]
		if st.holdouts == nil {
			st.holdouts = map[string]*flywheel.Experiment{}
		}
		st.holdouts[h.AnalysisKey()] = h.Analyzed()
		if h.Status == flywheel.StatusRunning {
			cfg.Holdouts = append(cfg.Holdouts, h.Assignable())
		}
	}
	snap, err := assign.Compile(cfg)
	if err != nil {
		return nil, fmt.Errorf("live: compile revision %d: %w", rev, err)
	}
	raw, err := json.Marshal(cfg)
	if err != nil {
		return nil, fmt.Errorf("live: encode sdk config: %w", err)
	}
	st.Snapshot, st.SDKConfig, st.ETag = snap, raw, `"`+strconv.FormatInt(rev, 10)+`"`
	return st, nil
}
