package sdk

import (
	"sync"
	"sync/atomic"
)

// defaultStickyUnits is the default bound of the sticky-arm memory.
const defaultStickyUnits = 1 << 20

// stickyArms remembers, for experiments whose weights move (bandits;
// assign.Experiment.Sticky), the arm each unit was first given by this
// process, so that a weight update does not move an enrolled unit to
// another arm. It is bounded: once it holds max units, units seen for the
// first time are assigned by the current weights and not remembered
// (Stats.StickyFull counts them). The memory lasts for the process: a new
// process assigns by the weights of the moment, and the server's recorded
// first exposure stays the unit's arm for the analysis.
type stickyArms struct {
	mu   sync.RWMutex
	arms map[stickyKey]int
	max  int
	full atomic.Uint64
}

type stickyKey struct{ experiment, unit string }

func newStickyArms(max int) *stickyArms {
	return &stickyArms{arms: map[stickyKey]int{}, max: max}
}

// arm returns the arm to give a unit that the current weights put in arm
// i: the one it was first given, or i (remembered) the first time.
func (s *stickyArms) arm(experiment, unit string, i int) int {
	k := stickyKey{experiment, unit}
	s.mu.RLock()
	first, ok := s.arms[k]
	s.mu.RUnlock()
	if ok {
		return first
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if first, ok := s.arms[k]; ok {
		return first
	}
	if len(s.arms) >= s.max {
		s.full.Add(1)
		return i
	}
	s.arms[k] = i
	return i
}

// remembered returns the arm a unit was first given, if it is remembered.
func (s *stickyArms) remembered(experiment, unit string) (int, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	i, ok := s.arms[stickyKey{experiment, unit}]
	return i, ok
}

// size returns the number of units remembered.
func (s *stickyArms) size() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.arms)
}
