package assign

import (
	"encoding/json"
	"errors"
	"math"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// validationFields returns the Field of every *ValidationError in err.
func validationFields(tb testing.TB, err error) []string {
	tb.Helper()
	var errs []error
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs = j.Unwrap()
	} else if err != nil {
		errs = []error{err}
	}
	var fields []string
	for _, e := range errs {
		var ve *ValidationError
		if !errors.As(e, &ve) {
			tb.Fatalf("error %v (%T) is not a *ValidationError", e, e)
		}
		fields = append(fields, ve.Field)
	}
	return fields
}

func TestCompileValidation(t *testing.T) {
	twenty := make([]Variant, 20)
	for i := range twenty {
		twenty[i] = Variant{Key: string(rune('a' + i)), Weight: 0.05}
	}
	tests := []struct {
		name   string
		change func(e *Experiment)
		fields []string // nil: valid
	}{
		{"valid", func(e *Experiment) {}, nil},
		{"20 variants", func(e *Experiment) { e.Variants = twenty }, nil},
		{"weights off by 1e-10", func(e *Experiment) { e.Variants[0].Weight = 0.5 + 1e-10 }, nil},
		{"layer range to 10000", func(e *Experiment) { e.Layer, e.LayerRange = "l", &LayerRange{From: 9999, To: 10000} }, nil},
		{"empty targeting object", func(e *Experiment) { e.Targeting = json.RawMessage(`{}`) }, nil},
		{"null targeting", func(e *Experiment) { e.Targeting = json.RawMessage(`null`) }, nil},
		{"missing key", func(e *Experiment) { e.Key = "" }, []string{"key"}},
		{"one variant", func(e *Experiment) { e.Variants = []Variant{{Key: "only", Weight: 1}} }, []string{"variants"}},
		{"21 variants", func(e *Experiment) {
			e.Variants = append(append([]Variant(nil), twenty...), Variant{Key: "extra", Weight: 0.05})
		}, []string{"variants", "variants[20].weight"}},
		{"zero weight", func(e *Experiment) { e.Variants[0].Weight = 0 }, []string{"variants[0].weight"}},
		{"weight above 1", func(e *Experiment) { e.Variants[1].Weight = 1.5 }, []string{"variants[1].weight"}},
		{"NaN weight", func(e *Experiment) { e.Variants[1].Weight = math.NaN() }, []string{"variants[1].weight"}},
		{"weights sum below 1", func(e *Experiment) { e.Variants[1].Weight = 0.4 }, []string{"variants[1].weight"}},
		{"weights off by 1e-8", func(e *Experiment) { e.Variants[1].Weight = 0.5 + 1e-8 }, []string{"variants[1].weight"}},
		{"duplicate variant key", func(e *Experiment) { e.Variants[1].Key = "control" }, []string{"variants[1].key"}},
		{"empty variant key", func(e *Experiment) { e.Variants[0].Key = "" }, []string{"variants[0].key"}},
		{"bad payload", func(e *Experiment) { e.Variants[0].Payload = json.RawMessage(`{"a":`) }, []string{"variants[0].payload"}},
		{"negative traffic", func(e *Experiment) { e.Traffic = -0.1 }, []string{"traffic"}},
		{"traffic above 1", func(e *Experiment) { e.Traffic = 1.01 }, []string{"traffic"}},
		{"NaN traffic", func(e *Experiment) { e.Traffic = math.NaN() }, []string{"traffic"}},
		{"layer without range", func(e *Experiment) { e.Layer = "l" }, []string{"layer_range"}},
		{"range without layer", func(e *Experiment) { e.LayerRange = &LayerRange{From: 0, To: 10} }, []string{"layer_range"}},
		{"empty range", func(e *Experiment) { e.Layer, e.LayerRange = "l", &LayerRange{From: 10, To: 10} }, []string{"layer_range"}},
		{"range past the end", func(e *Experiment) { e.Layer, e.LayerRange = "l", &LayerRange{From: 0, To: 10001} }, []string{"layer_range"}},
		{"negative range", func(e *Experiment) { e.Layer, e.LayerRange = "l", &LayerRange{From: -1, To: 10} }, []string{"layer_range"}},
		{"override to unknown variant", func(e *Experiment) { e.Overrides = map[string]string{"qa-1": "blue"} }, []string{"overrides.qa-1"}},
		{"targeting not an object", func(e *Experiment) { e.Targeting = json.RawMessage(`["FR"]`) }, []string{"targeting"}},
		{"targeting invalid JSON", func(e *Experiment) { e.Targeting = json.RawMessage(`{"country":`) }, []string{"targeting"}},
		{"targeting $in without array", func(e *Experiment) {
			e.Targeting = json.RawMessage(`{"country": {"$in": "FR"}}`)
		}, []string{"targeting.country.$in"}},
		{"several problems", func(e *Experiment) {
			e.Traffic = 2
			e.Variants[0].Weight = 0
			e.Targeting = json.RawMessage(`{"$or": [{"a": 1}, {"b": {"$bogus": 1}}]}`)
		}, []string{"variants[0].weight", "traffic", "targeting.$or[1].b.$bogus"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := halves("checkout-button")
			tt.change(&e)
			_, err := Compile(Config{Experiments: []Experiment{e}})
			if diff := cmp.Diff(tt.fields, validationFields(t, err)); diff != "" {
				t.Fatalf("Compile error fields mismatch (-want +got):\n%s\nerror: %v", diff, err)
			}
			if err != nil && e.Key != "" && !strings.Contains(err.Error(), `experiment "checkout-button": `+tt.fields[0]+": ") {
				t.Errorf("Compile error %q does not name the experiment and field %q", err, tt.fields[0])
			}
			if verr := e.Validate(); (verr == nil) != (err == nil) {
				t.Errorf("Validate() = %v, Compile error = %v", verr, err)
			}
		})
	}
}

func TestCompileConfigValidation(t *testing.T) {
	layered := func(key string, from, to int, running bool) Experiment {
		e := halves(key)
		e.Layer, e.LayerRange, e.Running = "home", &LayerRange{From: from, To: to}, running
		return e
	}
	tests := []struct {
		name   string
		exps   []Experiment
		fields []string
	}{
		{"disjoint layer ranges", []Experiment{layered("a", 0, 5000, true), layered("b", 5000, 10000, true)}, nil},
		{"overlap with a stopped experiment", []Experiment{layered("a", 0, 5000, true), layered("b", 4000, 10000, false)}, nil},
		{"overlapping running experiments", []Experiment{layered("a", 0, 5000, true), layered("b", 4999, 10000, true)}, []string{"layer_range"}},
		{"duplicate keys", []Experiment{halves("a"), halves("a")}, []string{"key"}},
		{"stopped experiments are validated too", []Experiment{func() Experiment {
			e := halves("s")
			e.Running, e.Traffic = false, 3
			return e
		}()}, []string{"traffic"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := Compile(Config{Experiments: tt.exps})
			if diff := cmp.Diff(tt.fields, validationFields(t, err)); diff != "" {
				t.Fatalf("Compile error fields mismatch (-want +got):\n%s\nerror: %v", diff, err)
			}
			if (s == nil) == (err == nil) {
				t.Errorf("Compile = %v, %v: want exactly one of snapshot and error", s, err)
			}
		})
	}
}

func TestValidationErrorMessage(t *testing.T) {
	tests := []struct {
		err  ValidationError
		want string
	}{
		{ValidationError{Experiment: "x", Index: 2, Field: "traffic", Msg: "bad"}, `experiment "x": traffic: bad`},
		{ValidationError{Index: 2, Field: "key", Msg: "is required"}, `experiments[2]: key: is required`},
		{ValidationError{Index: -1, Field: "key", Msg: "is required"}, `experiment: key: is required`},
	}
	for _, tt := range tests {
		if got := tt.err.Error(); got != tt.want {
			t.Errorf("Error() = %q, want %q", got, tt.want)
		}
	}
}

func TestLayerRangeJSON(t *testing.T) {
	e := halves("l")
	e.Layer, e.LayerRange = "home", &LayerRange{From: 100, To: 2500}
	data, err := json.Marshal(e)
	if err != nil {
		t.Fatalf("Marshal: %v", err)
	}
	if !strings.Contains(string(data), `"layer_range":[100,2500]`) {
		t.Errorf("Marshal = %s, want layer_range [100,2500]", data)
	}
	var back Experiment
	if err := json.Unmarshal(data, &back); err != nil {
		t.Fatalf("Unmarshal: %v", err)
	}
	if diff := cmp.Diff(e, back); diff != "" {
		t.Errorf("JSON round trip mismatch (-want +got):\n%s", diff)
	}
	for _, bad := range []string{`[1]`, `[1,2,3]`, `[1.5,2]`, `{"from":1}`, `"x"`} {
		var r LayerRange
		if err := json.Unmarshal([]byte(bad), &r); err == nil {
			t.Errorf("Unmarshal(%s) = %v, want an error", bad, r)
		}
	}
}
