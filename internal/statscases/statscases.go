// Package statscases reads the reference cases of internal/testdata/stats-cases
// (units.csv: one row per unit) for the tests of stats, analysis and the
// API, so that every reader parses the file the same strict way.
package statscases

import (
	"bytes"
	"encoding/csv"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
)

// Root is the folder of the cases, relative to a package folder one level
// below the repository's root (stats, analysis, api): the cases live in the
// repository, see internal/testdata/README.md for where they came from.
const Root = "../internal/testdata/stats-cases"

// Unit is one row of units.csv.
type Unit struct {
	ID         string
	Variant    string
	Converted  bool
	Revenue    float64
	PreRevenue float64 // the same metric before exposure: the CUPED covariate
}

// Read reads dir/units.csv and returns its raw bytes and its rows.
func Read(tb testing.TB, dir string) ([]byte, []Unit) {
	tb.Helper()
	data, err := os.ReadFile(filepath.Join(dir, "units.csv"))
	if err != nil {
		tb.Fatalf("reference case: %v", err)
	}
	return data, Parse(tb, data)
}

// Parse parses units.csv strictly: the exact header, converted 0 or 1,
// revenue and pre_revenue numbers; any other row fails the test.
func Parse(tb testing.TB, data []byte) []Unit {
	tb.Helper()
	rd := csv.NewReader(bytes.NewReader(data))
	header, err := rd.Read()
	if err != nil {
		tb.Fatal(err)
	}
	if want := []string{"unit_id", "variant", "converted", "revenue", "pre_revenue"}; !slices.Equal(header, want) {
		tb.Fatalf("units.csv header = %v, want %v", header, want)
	}
	var out []Unit
	for line := 2; ; line++ {
		rec, err := rd.Read()
		if err == io.EOF {
			return out
		}
		if err != nil {
			tb.Fatal(err)
		}
		rev, err1 := strconv.ParseFloat(rec[3], 64)
		pre, err2 := strconv.ParseFloat(rec[4], 64)
		if err1 != nil || err2 != nil || (rec[2] != "0" && rec[2] != "1") {
			tb.Fatalf("units.csv:%d: bad row %v", line, rec)
		}
		out = append(out, Unit{ID: rec[0], Variant: rec[1], Converted: rec[2] == "1", Revenue: rev, PreRevenue: pre})
	}
}
