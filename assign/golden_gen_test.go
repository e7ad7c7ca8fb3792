package assign

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
)

// goldenExperiments are the experiments of testdata/vectors.json: several
// weight schemes, traffic levels, a salt, a layer, targeting, overrides.
func goldenExperiments() []Experiment {
	third, seventh := 1.0/3, 1.0/7
	equal := func(prefix string, n int, w float64) []Variant {
		vs := make([]Variant, n)
		for i := range vs {
			vs[i] = Variant{Key: fmt.Sprintf("%s%d", prefix, i), Weight: w}
		}
		return vs
	}
	half := []Variant{{Key: "control", Weight: 0.5}, {Key: "treatment", Weight: 0.5, Payload: json.RawMessage(`{"color":"#0a0"}`)}}
	exp := func(key string, vs []Variant, traffic float64) Experiment {
		return Experiment{Key: key, UnitType: "customer", Variants: vs, Traffic: traffic, Running: true}
	}
	salted := exp("salted", half, 1)
	salted.Salt = "2024-q3-rerun"
	layerA := exp("layer-a", half, 1)
	layerA.Layer, layerA.LayerRange = "homepage", &LayerRange{From: 0, To: 3000}
	layerB := exp("layer-b", []Variant{{Key: "control", Weight: 0.25}, {Key: "hero", Weight: 0.75}}, 0.8)
	layerB.Layer, layerB.LayerRange = "homepage", &LayerRange{From: 3000, To: 10000}
	targeted := exp("targeted", half, 1)
	targeted.Targeting = json.RawMessage(`{"country":{"$in":["FR","BE"]},"stage":"prospect"}`)
	targeted.Overrides = map[string]string{"qa-customer-1": "treatment", "qa-customer-2": "control"}
	gated := exp("version-gate", half, 0.6)
	gated.UnitType = "device"
	gated.Targeting = json.RawMessage(`{"$or":[{"app_version":{"$vgte":"2.1.0"}},{"beta":true}],"platform":{"$in":["ios","android"]}}`)
	qa := exp("qa-overrides", []Variant{{Key: "a", Weight: 0.6}, {Key: "b", Weight: 0.4}}, 0.5)
	qa.Overrides = map[string]string{"qa-1": "a", "qa-2": "b", "ünïcödé-qa": "b"}
	stopped := exp("stopped", half, 1)
	stopped.Running = false
	return []Experiment{
		exp("checkout-button", half, 1),
		exp("ninety-ten", []Variant{{Key: "control", Weight: 0.9}, {Key: "new", Weight: 0.1}}, 1),
		exp("thirds", equal("v", 3, third), 1),
		exp("five-way-half", equal("arm", 5, 0.2), 0.5),
		exp("ramp-10", half, 0.1),
		exp("dark-launch", half, 0),
		salted, layerA, layerB, targeted, gated,
		exp("twenty-arms", equal("x", 20, 0.05), 0.9),
		exp("uneven", []Variant{{Key: "a", Weight: 0.1}, {Key: "b", Weight: 0.2}, {Key: "c", Weight: 0.3}, {Key: "d", Weight: 0.4}}, 0.75),
		exp("sevenths", equal("s", 7, seventh), 1),
		qa, stopped,
	}
}

// goldenUnits are ids every experiment is assigned: plain, uuid, email,
// unicode (NFC and NFD spellings hash differently), empty and long.
var goldenUnits = []string{
	"user-0", "user-1", "user-2", "user-3", "user-42", "c-42", "customer-000123",
	"0f8fad5b-d9cb-469f-a165-70867728950e", "7c9e6679-7425-40de-944b-e07fc1f90ae7",
	"alice@example.com", "ünïcödé", "用户-42", "😀-7", "Ω", "caf\u00e9", "cafe\u0301", "",
	strings.Repeat("long-id-", 40),
}

// search returns the first id "prefix-N" whose hash with hashPrefix satisfies ok.
func search(tb testing.TB, hashPrefix, prefix string, ok func(h uint32) bool) string {
	tb.Helper()
	st := prefixHasher(hashPrefix)
	for i := range 200_000_000 {
		id := fmt.Sprintf("%s-%d", prefix, i)
		h := st
		h.write(id)
		if ok(h.sum()) {
			return id
		}
	}
	tb.Fatalf("search %q found nothing", prefix)
	return ""
}

func hashAtLeast(min uint32) func(uint32) bool { return func(h uint32) bool { return h >= min } }
func hashAtMost(max uint32) func(uint32) bool  { return func(h uint32) bool { return h <= max } }
func hashBucket(b int) func(uint32) bool       { return func(h uint32) bool { return BucketOf(h) == b } }

// generateGolden builds the vectors from the current implementation.
func generateGolden(tb testing.TB) goldenVectors {
	v := goldenVectors{
		Description: "Flywheel assignment vectors: every SDK must reproduce each bucket and case exactly.",
		Algorithm: "hash(s) = MurmurHash3_x86_32(UTF-8 bytes of s, seed 0); bucket(s) = (hash(s) * 10000) >> 32 in 64-bit integers. " +
			"Per experiment: not running -> not_running; unit_id in overrides -> that variant (override); targeting not matched -> targeting; " +
			"layer set and bucket(\"layer:\" + layer + \":\" + unit_id) outside [from, to) -> layer; b = bucket(salt + \":\" + unit_id), salt defaulting to key; " +
			"variant i owns [start_i, end_i) with start_i = floor(10000*C_i + 1e-6), end_i = start_i + floor(10000*traffic*w_i + 1e-6) in float64, C_i the sum of earlier weights; " +
			"the first variant whose range holds b (bucket), else traffic.",
		Format: map[string]string{
			"buckets":              "bare hash function vectors: input string -> hash (uint32) and bucket",
			"experiments":          "experiment definitions in the GET /v1/sdk/config wire format; they compile together as one config",
			"cases[].experiment":   "key of the experiment assigned",
			"cases[].unit_id":      "the unit id",
			"cases[].attributes":   "the unit's attributes for targeting",
			"cases[].hash":         "hash(salt + \":\" + unit_id)",
			"cases[].bucket":       "bucket(salt + \":\" + unit_id)",
			"cases[].layer_bucket": "bucket(\"layer:\" + layer + \":\" + unit_id), for layered experiments only",
			"cases[].want":         "expected result: variant key (\"\" when not enrolled), variant index (-1 when not enrolled), enrolled, reason",
		},
		Experiments: goldenExperiments(),
	}
	for _, in := range []string{"", "a", "ab", "abc", "abcd", "hello", "hello, world", "user-1", "checkout-button:user-1", "ünïcödé", "😀", "layer:homepage:user-1"} {
		v.Buckets = append(v.Buckets, goldenBucket{Input: in})
	}
	v.Buckets = append(v.Buckets,
		goldenBucket{Input: search(tb, "", "near-max", hashAtLeast(0xFFFFFF00)), Note: "hash within 256 of 2^32"},
		goldenBucket{Input: search(tb, "", "near-max-b", hashAtLeast(0xFFFFF000)), Note: "hash within 4096 of 2^32"},
		goldenBucket{Input: search(tb, "", "first-of-9999", hashBucket(9999)), Note: "bucket 9999"},
		goldenBucket{Input: search(tb, "", "near-zero", hashAtMost(0xFF)), Note: "hash below 256"},
	)
	for i := range v.Buckets {
		v.Buckets[i].Hash, v.Buckets[i].Bucket = Hash(v.Buckets[i].Input), Bucket(v.Buckets[i].Input)
	}

	s, err := Compile(Config{Experiments: v.Experiments})
	if err != nil {
		tb.Fatalf("Compile golden experiments: %v", err)
	}
	add := func(name, exp, unit string, attrs map[string]any) {
		if attrs == nil {
			attrs = map[string]any{}
		}
		v.Cases = append(v.Cases, observe(s, goldenCase{Name: name, Experiment: exp, UnitID: unit, Attributes: attrs}))
	}
	plain := map[string]any{"country": "FR", "stage": "prospect", "platform": "ios", "app_version": "2.3.0"}
	for _, e := range v.Experiments {
		c, _ := s.Lookup(e.Key)
		salt := e.salt() + ":"
		for _, u := range goldenUnits {
			add(fmt.Sprintf("%s / unit %q", e.Key, u), e.Key, u, plain)
		}
		// Range edges: the first and last bucket of each variant, and the
		// first bucket past it.
		for i := range e.Variants {
			start, end := c.Range(i)
			for _, b := range []int{start, end - 1, end} {
				if b >= 0 && b < Buckets && (b != end-1 || end > start) {
					add(fmt.Sprintf("%s / variant %d edge bucket %d", e.Key, i, b), e.Key, search(tb, salt, "edge", hashBucket(b)), plain)
				}
			}
		}
		add(e.Key+" / hash near 2^32", e.Key, search(tb, salt, "near-max", hashAtLeast(0xFFFFF000)), plain)
		add(e.Key+" / hash near 0", e.Key, search(tb, salt, "near-zero", hashAtMost(0xFFF)), plain)
		if e.Layer != "" {
			for _, b := range []int{e.LayerRange.From - 1, e.LayerRange.From, e.LayerRange.To - 1, e.LayerRange.To} {
				if b >= 0 && b < Buckets {
					add(fmt.Sprintf("%s / layer bucket %d", e.Key, b), e.Key, search(tb, "layer:"+e.Layer+":", "layer-edge", hashBucket(b)), plain)
				}
			}
		}
		for id := range e.Overrides {
			add(fmt.Sprintf("%s / override %q", e.Key, id), e.Key, id, map[string]any{"country": "US"})
		}
	}
	targetingAttrs := []map[string]any{
		{"country": "FR", "stage": "prospect"},
		{"country": "BE", "stage": "prospect", "extra": 1},
		{"country": []any{"DE", "FR"}, "stage": "prospect"},
		{"country": "US", "stage": "prospect"},
		{"country": "fr", "stage": "prospect"},
		{"country": "FR", "stage": "customer"},
		{"country": "FR"},
		{},
	}
	gateAttrs := []map[string]any{
		{"app_version": "2.1.0", "platform": "ios"},
		{"app_version": "v2.10.0", "platform": "android"},
		{"app_version": "2.1.0-beta.1", "platform": "ios"},
		{"app_version": "2.0.9", "platform": "ios", "beta": true},
		{"app_version": "2.0.9", "platform": "ios"},
		{"app_version": "3.0.0", "platform": "web"},
		{"platform": "android"},
		{},
	}
	for i, a := range targetingAttrs {
		for _, u := range []string{"user-0", "user-1", "user-2", "qa-customer-2"} {
			add(fmt.Sprintf("targeted / attributes %d / unit %q", i, u), "targeted", u, a)
		}
	}
	for i, a := range gateAttrs {
		for _, u := range []string{"device-0", "device-1", "device-2"} {
			add(fmt.Sprintf("version-gate / attributes %d / unit %q", i, u), "version-gate", u, a)
		}
	}
	return v
}

// encodeGolden writes the vectors with one bucket or case per line.
func encodeGolden(tb testing.TB, v goldenVectors) []byte {
	tb.Helper()
	var b bytes.Buffer
	field := func(name string, val any, last bool) {
		data, err := marshalNoEscape(val, "  ")
		if err != nil {
			tb.Fatalf("encode %s: %v", name, err)
		}
		fmt.Fprintf(&b, "  %q: %s", name, data)
		if !last {
			b.WriteString(",")
		}
		b.WriteString("\n")
	}
	list := func(name string, n int, item func(i int) any, last bool) {
		fmt.Fprintf(&b, "  %q: [\n", name)
		for i := range n {
			data, err := marshalNoEscape(item(i), "")
			if err != nil {
				tb.Fatalf("encode %s[%d]: %v", name, i, err)
			}
			b.WriteString("    ")
			b.Write(data)
			if i < n-1 {
				b.WriteString(",")
			}
			b.WriteString("\n")
		}
		b.WriteString("  ]")
		if !last {
			b.WriteString(",")
		}
		b.WriteString("\n")
	}
	b.WriteString("{\n")
	field("description", v.Description, false)
	field("algorithm", v.Algorithm, false)
	field("format", v.Format, false)
	list("buckets", len(v.Buckets), func(i int) any { return v.Buckets[i] }, false)
	list("experiments", len(v.Experiments), func(i int) any { return v.Experiments[i] }, false)
	list("cases", len(v.Cases), func(i int) any { return v.Cases[i] }, true)
	b.WriteString("}\n")
	return b.Bytes()
}

// marshalNoEscape is json.Marshal (indented when indent is set) without
// escaping <, > and &.
func marshalNoEscape(v any, indent string) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if indent != "" {
		enc.SetIndent(indent, "  ")
	}
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimRight(b.Bytes(), "\n"), nil
}
