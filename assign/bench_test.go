//go:build !race

// Benchmarks are excluded from race builds: BenchmarkMurmurFloor calls
// murmur3.Sum32, which aborts under -race (checkptr), and timings under the
// race detector mean nothing.

package assign

import (
	"encoding/json"
	"fmt"
	"testing"

	"github.com/spaolacci/murmur3"
)

// benchTargeting is the contract's example targeting rule.
const benchTargeting = `{"country": {"$in": ["FR", "BE"]}, "stage": "prospect"}`

const (
	benchKey  = "checkout-button"
	benchUnit = "customer-000042"
)

var (
	benchAttrs = map[string]any{"country": "FR", "stage": "prospect", "plan": "pro", "age": 31.0}
	sinkResult Result
	sinkHash   uint32
	sinkBool   bool
)

func benchSnapshot(b *testing.B) *Snapshot {
	e := halves(benchKey)
	e.Targeting = json.RawMessage(benchTargeting)
	e.Overrides = map[string]string{"qa-customer-1": "treatment"}
	return mustCompile(b, e)
}

// BenchmarkAssign is one running experiment with a targeting rule: the
// budget is 100 ns/op and 0 allocs/op.
func BenchmarkAssign(b *testing.B) {
	s := benchSnapshot(b)
	b.ReportAllocs()
	for b.Loop() {
		sinkResult = s.Assign(benchKey, benchUnit, benchAttrs)
	}
	if !sinkResult.Enrolled {
		b.Fatalf("Assign = %+v, want enrolled", sinkResult)
	}
}

// BenchmarkAssignNoTargeting is one running experiment targeting everyone.
func BenchmarkAssignNoTargeting(b *testing.B) {
	s := mustCompile(b, halves(benchKey))
	b.ReportAllocs()
	for b.Loop() {
		sinkResult = s.Assign(benchKey, benchUnit, benchAttrs)
	}
}

// BenchmarkAssign100 assigns one unit to 100 running experiments (a third
// targeted, a third in layers): the budget is 10 µs/op.
func BenchmarkAssign100(b *testing.B) {
	var exps []Experiment
	for i := range 100 {
		e := halves(fmt.Sprintf("experiment-%03d", i))
		switch i % 3 {
		case 1:
			e.Targeting = json.RawMessage(benchTargeting)
		case 2:
			e.Layer = fmt.Sprintf("layer-%d", i%10)
			e.LayerRange = &LayerRange{From: (i / 10) * 1000, To: (i/10)*1000 + 1000}
		}
		exps = append(exps, e)
	}
	s := mustCompile(b, exps...)
	keys := s.Keys()
	b.ReportAllocs()
	for b.Loop() {
		for _, k := range keys {
			sinkResult = s.Assign(k, benchUnit, benchAttrs)
		}
	}
}

// BenchmarkMurmurFloor is the floor for the hash part of Assign: bare
// murmur3.Sum32 of the bytes Assign hashes.
func BenchmarkMurmurFloor(b *testing.B) {
	data := []byte(benchKey + ":" + benchUnit)
	b.ReportAllocs()
	for b.Loop() {
		sinkHash = murmur3.Sum32(data)
	}
}

// BenchmarkHashPrefixed is Assign's hashing: the "salt:" prefix state is
// precomputed and the unit id streamed after it.
func BenchmarkHashPrefixed(b *testing.B) {
	st := prefixHasher(benchKey + ":")
	b.ReportAllocs()
	for b.Loop() {
		h := st
		h.write(benchUnit)
		sinkHash = h.sum()
	}
}

// BenchmarkHash is Hash of the whole string.
func BenchmarkHash(b *testing.B) {
	s := benchKey + ":" + benchUnit
	b.ReportAllocs()
	for b.Loop() {
		sinkHash = Hash(s)
	}
}

// BenchmarkConditionMatch is the contract's targeting rule alone.
func BenchmarkConditionMatch(b *testing.B) {
	c, err := ParseCondition(json.RawMessage(benchTargeting))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		sinkBool = c.Match(benchAttrs)
	}
}

// BenchmarkConditionMatchRich exercises more operators: nested paths,
// $regex, version comparison, $ini over a long list and $elemMatch.
func BenchmarkConditionMatchRich(b *testing.B) {
	c, err := ParseCondition(json.RawMessage(`{
		"user.plan": {"$in": ["pro", "team"]},
		"ua": {"$regex": "Mobile|Tablet"},
		"app_version": {"$vgte": "2.1.0"},
		"country": {"$ini": ["at","be","ch","de","dk","es","fi","fr","ie","it","nl","pt","se"]},
		"items": {"$elemMatch": {"sku": "A-1", "qty": {"$gt": 0}}},
		"$or": [{"beta": true}, {"age": {"$gte": 18}}]
	}`))
	if err != nil {
		b.Fatal(err)
	}
	attrs := map[string]any{
		"user":        map[string]any{"plan": "team"},
		"ua":          "Mozilla/5.0 (Linux; Android 14) Mobile Safari",
		"app_version": "2.4.1",
		"country":     "FR",
		"items":       []any{map[string]any{"sku": "B-2", "qty": 1.0}, map[string]any{"sku": "A-1", "qty": 2.0}},
		"age":         33.0,
	}
	if !c.Match(attrs) {
		b.Fatal("rich condition does not match")
	}
	b.ReportAllocs()
	for b.Loop() {
		sinkBool = c.Match(attrs)
	}
}

// BenchmarkCompile compiles a 100-experiment config.
func BenchmarkCompile(b *testing.B) {
	var exps []Experiment
	for i := range 100 {
		e := halves(fmt.Sprintf("experiment-%03d", i))
		e.Targeting = json.RawMessage(benchTargeting)
		exps = append(exps, e)
	}
	cfg := Config{Revision: 1, Experiments: exps}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Compile(cfg); err != nil {
			b.Fatal(err)
		}
	}
}

// benchHoldoutSnapshot is benchSnapshot with a running holdout on the
// experiment's unit type covering it, at 10%.
func benchHoldoutSnapshot(b *testing.B) *Snapshot {
	e := halves(benchKey)
	e.Targeting = json.RawMessage(benchTargeting)
	e.Overrides = map[string]string{"qa-customer-1": "treatment"}
	s, err := Compile(Config{Experiments: []Experiment{e},
		Holdouts: []Holdout{{Key: "program", UnitType: "customer", Fraction: 0.1, Experiments: []string{benchKey}, Running: true}}})
	if err != nil {
		b.Fatal(err)
	}
	return s
}

// BenchmarkAssignHoldout is BenchmarkAssign with a holdout covering the
// experiment, for a unit it keeps in (one more hash) and for one it holds
// out (the hash, then the assignment it would have had, for WouldEnroll).
// Compare with BenchmarkAssign in the same run.
func BenchmarkAssignHoldout(b *testing.B) {
	s := benchHoldoutSnapshot(b)
	for _, tt := range []struct {
		name string
		held bool
	}{{"kept", false}, {"held", true}} {
		unit := ""
		for i := 0; unit == ""; i++ {
			id := fmt.Sprintf("customer-%06d", i)
			if (Bucket("holdout:program:"+id) < 1000) == tt.held {
				unit = id
			}
		}
		b.Run(tt.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				sinkResult = s.Assign(benchKey, unit, benchAttrs)
			}
			if (sinkResult.Reason == ReasonHoldout) != tt.held {
				b.Fatalf("Assign = %+v", sinkResult)
			}
		})
	}
}
