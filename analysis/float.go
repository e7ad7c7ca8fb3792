package analysis

import (
	"bytes"
	"encoding/json"
	"math"

	"github.com/flywheel-oss/flywheel/stats"
)

// Float is a float64 that is written to JSON as null when it is undefined:
// NaN, and also ±Inf, which JSON cannot carry (an unbounded confidence
// sequence before any evidence). Reading null gives NaN.
type Float float64

// Defined reports whether f is a finite number.
func (f Float) Defined() bool {
	return !math.IsNaN(float64(f)) && !math.IsInf(float64(f), 0)
}

// MarshalJSON writes f as encoding/json writes a float64, or null.
func (f Float) MarshalJSON() ([]byte, error) {
	if !f.Defined() {
		return []byte("null"), nil
	}
	return json.Marshal(float64(f))
}

// UnmarshalJSON reads a number, or null as NaN.
func (f *Float) UnmarshalJSON(b []byte) error {
	if bytes.Equal(bytes.TrimSpace(b), []byte("null")) {
		*f = Float(math.NaN())
		return nil
	}
	var v float64
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	*f = Float(v)
	return nil
}

// nan is the undefined Float.
func nan() Float { return Float(math.NaN()) }

// Estimate is a point estimate with its two-sided interval, [lower, upper],
// at the confidence level 1 − alpha. An Estimate whose point estimate is
// undefined (a relative lift when the control mean is 0) is written as
// null; a bound that is undefined or infinite is written as null.
type Estimate struct {
	Estimate Float    `json:"estimate"`
	CI       [2]Float `json:"ci"`
}

// Defined reports whether the point estimate is a number.
func (e Estimate) Defined() bool { return e.Estimate.Defined() }

type estimateJSON Estimate

// MarshalJSON writes null for an undefined estimate.
func (e Estimate) MarshalJSON() ([]byte, error) {
	if math.IsNaN(float64(e.Estimate)) {
		return []byte("null"), nil
	}
	return json.Marshal(estimateJSON(e))
}

// UnmarshalJSON reads null as an Estimate whose every field is NaN.
func (e *Estimate) UnmarshalJSON(b []byte) error {
	if bytes.Equal(bytes.TrimSpace(b), []byte("null")) {
		*e = undefinedEstimate()
		return nil
	}
	var v estimateJSON
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	*e = Estimate(v)
	return nil
}

func undefinedEstimate() Estimate {
	return Estimate{Estimate: nan(), CI: [2]Float{nan(), nan()}}
}

// fromStats converts a stats.Estimate.
func fromStats(e stats.Estimate) Estimate {
	return Estimate{Estimate: Float(e.Value), CI: [2]Float{Float(e.CI.Lower), Float(e.CI.Upper)}}
}

// floats converts a slice.
func floats(v []float64) []Float {
	out := make([]Float, len(v))
	for i, x := range v {
		out[i] = Float(x)
	}
	return out
}
