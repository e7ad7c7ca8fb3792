package sdk

import (
	"context"
	"encoding/json"
	"hash/maphash"

	"github.com/flywheel-oss/flywheel/assign"
)

// Reason says why a unit got, or did not get, a variant: assign's reasons
// (the values of POST /v1/assign, part of the public contract), plus two
// that exist only in the SDK.
type Reason = assign.Reason

// Reasons.
const (
	ReasonOverride   = assign.ReasonOverride   // the unit id is listed in the experiment's overrides
	ReasonTargeting  = assign.ReasonTargeting  // the unit's attributes do not match the targeting
	ReasonLayer      = assign.ReasonLayer      // the unit's layer bucket is outside the experiment's range
	ReasonTraffic    = assign.ReasonTraffic    // the unit's bucket falls in no variant's range
	ReasonBucket     = assign.ReasonBucket     // the unit is enrolled by hashing
	ReasonNotRunning = assign.ReasonNotRunning // the experiment is unknown to the config or not running
	ReasonOptedOut   = assign.ReasonOptedOut   // the unit did not consent to analytics
	ReasonHoldout    = assign.ReasonHoldout    // a running holdout keeps the unit out of the experiment: it gets the control
	// ReasonNoUnitID: the unit has no id of the experiment's unit type.
	ReasonNoUnitID Reason = "no_unit_id"
	// ReasonNoConfig: the client has no config yet (none from the server
	// and no bootstrap), so it assigns nobody.
	ReasonNoConfig Reason = "no_config"
)

// Assignment is the outcome of assigning one unit to one experiment.
type Assignment struct {
	// Experiment is the experiment key.
	Experiment string
	// Variant is the variant key, "" when the unit is not enrolled.
	Variant string
	// Index is the variant's position (0 is the control), -1 when the unit
	// is not enrolled.
	Index int
	// Payload is the variant's payload, nil when it has none or the unit is
	// not enrolled. It is shared with the client's config: do not modify it.
	Payload json.RawMessage
	// Enrolled reports whether the unit is in a variant. An app shows the
	// control experience when it is false.
	Enrolled bool
	// Reason says why.
	Reason Reason
	// Holdout is the key of the holdout that keeps the unit out of the
	// experiment (ReasonHoldout); Variant is then the control's key, Index
	// 0 and Enrolled false.
	Holdout string
}

// compiled is one config the client assigns from: the assign snapshot plus
// what the SDK needs per experiment. It is immutable.
type compiled struct {
	revision    int64
	snap        *assign.Snapshot
	experiments map[string]*experiment
	holdouts    map[*assign.CompiledHoldout]*holdout
	fromServer  bool
	etag        string
}

// experiment is one compiled experiment with its unit type and the hash of
// its key for the exposure cache.
type experiment struct {
	c        *assign.Compiled
	unitType string
	keyHash  uint64
}

// holdout is what the SDK needs to log a holdout's exposures: the key
// they are recorded under ("holdout:" + key) and its hash for the
// exposure cache.
type holdout struct {
	c       *assign.CompiledHoldout
	key     string
	keyHash uint64
}

// compile parses and compiles a GET /v1/sdk/config body.
func compileConfig(raw []byte, seed maphash.Seed) (*compiled, error) {
	var cfg assign.Config
	if err := json.Unmarshal(raw, &cfg); err != nil {
		return nil, err
	}
	snap, err := assign.Compile(cfg)
	if err != nil {
		return nil, err
	}
	out := &compiled{revision: cfg.Revision, snap: snap, experiments: make(map[string]*experiment, len(cfg.Experiments))}
	for _, e := range cfg.Experiments {
		c, ok := snap.Lookup(e.Key)
		if !ok {
			continue
		}
		out.experiments[e.Key] = &experiment{c: c, unitType: e.UnitType, keyHash: maphash.String(seed, e.Key)}
		for _, h := range c.Holdouts() {
			if out.holdouts == nil {
				out.holdouts = map[*assign.CompiledHoldout]*holdout{}
			}
			if out.holdouts[h] == nil {
				key := assign.HoldoutPrefix + h.Key()
				out.holdouts[h] = &holdout{c: h, key: key, keyHash: maphash.String(seed, key)}
			}
		}
	}
	return out, nil
}

// Assign assigns unit to the experiment with the given key, from the
// client's current config, without any network call; it never blocks on
// I/O, never errors and never panics. The checks run in this order, as in
// POST /v1/assign: an experiment unknown to the config or not running gives
// ReasonNotRunning; a unit that did not consent (Unit.OptedOut, WithConsent)
// or that opted out on the server (PUT .../consent, learnt from
// GET /v1/sdk/opt-outs with the config), ReasonOptedOut; the experiment's
// unit type picks the unit's id, and a unit without that id (or with an
// empty one) is not enrolled (ReasonNoUnitID); then override, targeting, layer and bucket as
// in package assign. An empty id is never assigned, unlike in the pure
// function, so anonymous users are not all bucketed together as "". The first time
// a unit is enrolled in an experiment (per process), Assign queues one
// exposure event, unless exposure logging is off; later calls for the same
// unit and experiment neither allocate nor queue anything.
//
// In a bandit experiment (whose weights move), a unit keeps the arm this
// process first gave it (WithStickyUnits bounds that memory); a new process
// buckets it by the weights of the moment, and the analysis uses the arm
// of its first recorded exposure.
//
// ctx is not used for I/O; it is accepted so that calls read like the rest
// of the API and can carry request-scoped values in the future.
func (c *Client) Assign(ctx context.Context, unit Unit, experimentKey string) Assignment {
	cfg := c.config.Load()
	if cfg == nil {
		return notEnrolled(experimentKey, ReasonNoConfig)
	}
	e, ok := cfg.experiments[experimentKey]
	if !ok {
		return notEnrolled(experimentKey, ReasonNotRunning)
	}
	if !e.c.Running() {
		return notEnrolled(experimentKey, ReasonNotRunning)
	}
	if !c.consents(&unit) {
		return notEnrolled(experimentKey, ReasonOptedOut)
	}
	id := unit.ID(e.unitType)
	if id != "" && c.optOuts.has(e.unitType, id) { // opted out on the server
		return notEnrolled(experimentKey, ReasonOptedOut)
	}
	if id == "" {
		return notEnrolled(experimentKey, ReasonNoUnitID)
	}
	var held *assign.CompiledHoldout
	for _, h := range e.c.Holdouts() {
		if h.Holds(unit.ID(h.UnitType())) {
			held = h
			break
		}
	}
	r := e.c.AssignHeld(id, unit.Attributes, held)
	if e.c.Sticky() {
		// A bandit's weights move: the unit keeps the arm it was first
		// given, also when traffic below 1 now leaves its bucket out.
		switch r.Reason {
		case assign.ReasonBucket:
			if i := c.sticky.arm(experimentKey, id, r.Index); i != r.Index {
				if first, ok := e.c.Enrolled(i); ok {
					r = first
				}
			}
		case assign.ReasonTraffic:
			if i, ok := c.sticky.remembered(experimentKey, id); ok {
				if first, ok := e.c.Enrolled(i); ok {
					r = first
				}
			}
		}
	}
	if r.Enrolled && c.opts.exposures && c.seen.firstSeen(exposureHash(c.seed, e.keyHash, id, r.Index)) {
		c.logExposure(e, &unit, id, r.Variant)
	}
	if c.opts.exposures && len(cfg.holdouts) > 0 {
		c.logHoldoutExposures(cfg, e, &unit, &r, held)
	}
	return Assignment{
		Experiment: r.Experiment,
		Variant:    r.Variant,
		Index:      r.Index,
		Payload:    r.Payload,
		Enrolled:   r.Enrolled,
		Reason:     Reason(r.Reason),
		Holdout:    r.Holdout,
	}
}

// logHoldoutExposures records, once per unit and holdout, who a holdout's
// results compare: a held-out unit that would have been enrolled is in
// the holdout's "holdout" arm, and a unit enrolled by bucket in an
// experiment a holdout covers is in its "exposed" arm, both under the
// unit's id of the holdout's unit type.
func (c *Client) logHoldoutExposures(cfg *compiled, e *experiment, unit *Unit, r *assign.Result, held *assign.CompiledHoldout) {
	switch {
	case held != nil && r.Reason == assign.ReasonHoldout:
		if r.WouldEnroll {
			c.logHoldoutExposure(cfg.holdouts[held], unit, assign.HoldoutHeldOut, 0)
		}
	case r.Enrolled && r.Reason == assign.ReasonBucket:
		for _, h := range e.c.Holdouts() {
			c.logHoldoutExposure(cfg.holdouts[h], unit, assign.HoldoutExposed, 1)
		}
	}
}

func (c *Client) logHoldoutExposure(h *holdout, unit *Unit, variant string, index int) {
	if h == nil {
		return
	}
	id := unit.ID(h.c.UnitType())
	if id == "" || c.optOuts.has(h.c.UnitType(), id) || !c.seen.firstSeen(exposureHash(c.seed, h.keyHash, id, index)) {
		return
	}
	c.logExposureAs(h.key, h.c.UnitType(), unit, id, variant)
}

// consents reports whether unit may be enrolled and tracked.
func (c *Client) consents(u *Unit) bool {
	if u.OptedOut {
		return false
	}
	return c.opts.consent == nil || c.opts.consent(*u)
}

func notEnrolled(key string, reason Reason) Assignment {
	return Assignment{Experiment: key, Index: -1, Reason: reason}
}

// exposureHash is the exposure cache's key for (experiment, unit id,
// variant): the experiment key's hash (precomputed per config) mixed with the
// unit id's, without building a string. The variant is part of the key so
// that a unit moved to another variant (an override change) is logged again,
// and the server can flag it.
func exposureHash(seed maphash.Seed, keyHash uint64, unitID string, variant int) uint64 {
	h := keyHash ^ (maphash.String(seed, unitID) * 0x9e3779b97f4a7c15) ^ uint64(variant+1)<<56
	// splitmix64's finaliser spreads every input bit over the whole word.
	h ^= h >> 30
	h *= 0xbf58476d1ce4e5b9
	h ^= h >> 27
	h *= 0x94d049bb133111eb
	h ^= h >> 31
	return h
}
