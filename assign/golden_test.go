package assign

import (
	"encoding/json"
	"flag"
	"os"
	"testing"

	"github.com/google/go-cmp/cmp"
)

var update = flag.Bool("update", false, "rewrite testdata/vectors.json from the current implementation")

// goldenFile pins the assignment algorithm for every SDK. Its format, which
// the file also describes in its "format" member:
//
//	{
//	  "description": "...", "algorithm": "...", "format": {...},
//	  "buckets": [                     // the bare hash and bucket function
//	    {"input": "hello", "hash": 613153351, "bucket": 1427}, ...
//	  ],
//	  "experiments": [ Experiment, ... ], // the GET /v1/sdk/config wire format;
//	                                      // together they compile as one Config
//	  "cases": [
//	    {"name": "...", "experiment": "thirds", "unit_id": "u-1",
//	     "attributes": {...},             // the unit's attributes, may be {}
//	     "hash": 123,                     // Hash(salt + ":" + unit_id)
//	     "bucket": 4567,                  // Bucket(salt + ":" + unit_id)
//	     "layer_bucket": 89,              // Bucket("layer:" + layer + ":" + unit_id), layered only
//	     "want": {"variant": "b", "index": 1, "enrolled": true, "reason": "bucket"}}, ...
//	  ]
//	}
//
// "want.variant" is "" and "want.index" -1 when the unit is not enrolled.
// Regenerate with: go test ./assign -run TestGolden -update
const goldenFile = "testdata/vectors.json"

type goldenVectors struct {
	Description string            `json:"description"`
	Algorithm   string            `json:"algorithm"`
	Format      map[string]string `json:"format"`
	Buckets     []goldenBucket    `json:"buckets"`
	Experiments []Experiment      `json:"experiments"`
	Cases       []goldenCase      `json:"cases"`
}

type goldenBucket struct {
	Input  string `json:"input"`
	Hash   uint32 `json:"hash"`
	Bucket int    `json:"bucket"`
	Note   string `json:"note,omitempty"`
}

type goldenCase struct {
	Name        string         `json:"name"`
	Experiment  string         `json:"experiment"`
	UnitID      string         `json:"unit_id"`
	Attributes  map[string]any `json:"attributes"`
	Hash        uint32         `json:"hash"`
	Bucket      int            `json:"bucket"`
	LayerBucket *int           `json:"layer_bucket,omitempty"`
	Want        goldenWant     `json:"want"`
}

type goldenWant struct {
	Variant  string `json:"variant"`
	Index    int    `json:"index"`
	Enrolled bool   `json:"enrolled"`
	Reason   Reason `json:"reason"`
}

// observe computes a case's hashes and result with the current code.
func observe(s *Snapshot, c goldenCase) goldenCase {
	e, _ := s.Lookup(c.Experiment)
	def := e.Definition()
	key := def.salt() + ":" + c.UnitID
	c.Hash, c.Bucket, c.LayerBucket = Hash(key), Bucket(key), nil
	if def.Layer != "" {
		lb := Bucket("layer:" + def.Layer + ":" + c.UnitID)
		c.LayerBucket = &lb
	}
	r := s.Assign(c.Experiment, c.UnitID, c.Attributes)
	c.Want = goldenWant{Variant: r.Variant, Index: r.Index, Enrolled: r.Enrolled, Reason: r.Reason}
	return c
}

func TestGolden(t *testing.T) {
	if *update {
		v := generateGolden(t)
		if err := os.WriteFile(goldenFile, encodeGolden(t, v), 0o644); err != nil {
			t.Fatalf("write %s: %v", goldenFile, err)
		}
		t.Logf("wrote %d buckets and %d cases to %s", len(v.Buckets), len(v.Cases), goldenFile)
	}
	data, err := os.ReadFile(goldenFile)
	if err != nil {
		t.Fatalf("read golden file (generate it with -update): %v", err)
	}
	var v goldenVectors
	if err := json.Unmarshal(data, &v); err != nil {
		t.Fatalf("decode %s: %v", goldenFile, err)
	}
	if len(v.Cases) < 300 || len(v.Buckets) < 10 {
		t.Fatalf("%s has %d cases and %d buckets, want at least 300 and 10", goldenFile, len(v.Cases), len(v.Buckets))
	}
	for _, b := range v.Buckets {
		if got := Hash(b.Input); got != b.Hash {
			t.Errorf("Hash(%q) = %d, want %d", b.Input, got, b.Hash)
		}
		if got := Bucket(b.Input); got != b.Bucket {
			t.Errorf("Bucket(%q) = %d, want %d", b.Input, got, b.Bucket)
		}
	}
	s, err := Compile(Config{Revision: 1, Experiments: v.Experiments})
	if err != nil {
		t.Fatalf("Compile golden experiments: %v", err)
	}
	for _, want := range v.Cases {
		got := observe(s, want)
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("case %q mismatch (-want +got):\n%s", want.Name, diff)
		}
	}
}
