package assign

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
)

// Variant is one arm of an experiment. The first variant of an experiment is
// its control.
type Variant struct {
	Key     string          `json:"key"`
	Weight  float64         `json:"weight"`
	Payload json.RawMessage `json:"payload,omitempty"`
}

// LayerRange is the half-open range [From, To) of a layer's Buckets that an
// experiment owns. It is written in JSON as a two-element array [from, to].
type LayerRange struct {
	From, To int
}

// MarshalJSON writes r as [from, to].
func (r LayerRange) MarshalJSON() ([]byte, error) {
	return []byte(fmt.Sprintf("[%d,%d]", r.From, r.To)), nil
}

// UnmarshalJSON reads [from, to]; both must be integers. Range checks are
// left to Compile, which reports them with the field path.
func (r *LayerRange) UnmarshalJSON(data []byte) error {
	if string(bytes.TrimSpace(data)) == "null" {
		return nil
	}
	// A *json.UnmarshalTypeError lets the decoder name the field at fault.
	var a []int
	if err := json.Unmarshal(data, &a); err != nil || len(a) != 2 {
		found := "an array of other values"
		switch t := bytes.TrimSpace(data); {
		case len(t) == 0:
		case t[0] == '{':
			found = "object"
		case t[0] == '"':
			found = "string"
		case t[0] == 't' || t[0] == 'f':
			found = "bool"
		case t[0] != '[':
			found = "number"
		case err == nil:
			found = fmt.Sprintf("an array of %d integers", len(a))
		}
		return &json.UnmarshalTypeError{Value: found, Type: reflect.TypeOf(r)}
	}
	r.From, r.To = a[0], a[1]
	return nil
}

// String formats r as the interval it denotes.
func (r LayerRange) String() string {
	return fmt.Sprintf("[%d, %d)", r.From, r.To)
}

// Experiment is the definition of an experiment as assignment needs it. It
// is also the wire format of each experiment in GET /v1/sdk/config.
type Experiment struct {
	// Key identifies the experiment.
	Key string `json:"key"`
	// Salt seeds the variant hash; it defaults to Key when empty.
	Salt string `json:"salt,omitempty"`
	// UnitType names the identifier the experiment randomises on.
	UnitType string `json:"unit_type"`
	// Variants lists 2 to 20 arms; the first is the control. Weights are in
	// (0, 1] and sum to 1 (within 1e-9).
	Variants []Variant `json:"variants"`
	// Traffic is the fraction of eligible units enrolled, in [0, 1].
	Traffic float64 `json:"traffic"`
	// Layer makes the experiment mutually exclusive with the other
	// experiments of the same layer; empty means no layer.
	Layer string `json:"layer,omitempty"`
	// LayerRange is the part of the layer the experiment owns; required
	// when Layer is set.
	LayerRange *LayerRange `json:"layer_range,omitempty"`
	// Targeting is a GrowthBook condition on the unit's attributes; empty,
	// null or {} targets everyone.
	Targeting json.RawMessage `json:"targeting,omitempty"`
	// Overrides maps a unit id to the key of the variant it always gets.
	Overrides map[string]string `json:"overrides,omitempty"`
	// Running is false for experiments that assign nobody.
	Running bool `json:"running"`
	// Sticky says that a unit keeps the arm it was first given even when
	// the weights change (bandit experiments, whose weights move): an SDK
	// remembers each unit's first arm for its process's lifetime.
	Sticky bool `json:"sticky,omitempty"`
}

// salt returns the hash salt: Salt, or Key when Salt is empty.
func (e *Experiment) salt() string {
	if e.Salt != "" {
		return e.Salt
	}
	return e.Key
}

// Config is everything an SDK needs to assign locally: the body of GET
// /v1/sdk/config.
type Config struct {
	Revision    int64        `json:"revision"`
	Experiments []Experiment `json:"experiments"`
	// Audiences holds the saved audiences the experiments' targeting
	// references ({"$audience": key}), directly or through one another;
	// Compile inlines them.
	Audiences Audiences `json:"audiences,omitempty"`
	// Holdouts holds the running holdouts: each keeps a stable share of
	// the units out of the experiments it covers (see Holdout).
	Holdouts []Holdout `json:"holdouts,omitempty"`
}
