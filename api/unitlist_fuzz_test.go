package api

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/flywheel-oss/flywheel/internal/strictjson"
)

// readList reads a whole list, returning its rows and the bad rows' lines,
// or the fatal error.
func readList(t *testing.T, l listReader) (rows []listRow, badLines []int, fatal error) {
	t.Helper()
	for i := 0; ; i++ {
		if i > 1<<20 {
			t.Fatal("the list reader does not end")
		}
		var r listRow
		err := l.Next(&r)
		var re *rowError
		var fe *fatalListError
		switch {
		case err == io.EOF:
			return rows, badLines, nil
		case errors.As(err, &re):
			if re.Line < 1 || !strings.HasPrefix(re.Error(), "line ") {
				t.Fatalf("bad row without its line: %+v", re)
			}
			badLines = append(badLines, re.Line)
		case errors.As(err, &fe):
			if fe.err.Field == "" || !strings.HasPrefix(fe.err.Field, "lines[") {
				t.Fatalf("fatal list error names no line: %+v", fe.err)
			}
			return rows, badLines, err
		case err != nil:
			t.Fatalf("unexpected error %T: %v", err, err)
		default:
			rows = append(rows, r)
		}
	}
}

// checkRow: what a reader accepts is a unit the rest of the path takes:
// a valid id and attributes that encode to storable JSON.
func checkRow(t *testing.T, r listRow) {
	t.Helper()
	if checkListUnitID(r.UnitID) != "" || !utf8.ValidString(r.UnitID) {
		t.Fatalf("accepted unit id %q", r.UnitID)
	}
	if r.Line < 1 {
		t.Fatalf("row without a line: %+v", r)
	}
	if r.Attrs != nil {
		raw, err := json.Marshal(r.Attrs)
		if err != nil || bytes.Contains(raw, []byte(`\u0000`)) {
			t.Fatalf("accepted attributes %v encode to %s (%v)", r.Attrs, raw, err)
		}
	}
}

func FuzzNDJSONList(f *testing.F) {
	for _, s := range []string{
		"{\"unit_id\": \"c-1\", \"attributes\": {\"country\": \"FR\"}}\n{\"unit_id\": \"c-2\"}\n",
		"\n\r\n{\"unit_id\": \"\"}\n{\"unit_id\": 5}\n",
		"{\"unit_id\": \"c\", \"attributes\": [1]}\n{\"unit_id\": \"c\", \"attributes\": {\"a\": \"\\u0000\"}}",
		"{\"unit_id\": \"c\", \"attributes\": {\"a\": 1, \"a\": 2}}\n{\"unit_id\": \"c\", \"x\": 1}\n[]\nnull\n",
		"{\"unit_id\": \"c\", \"attributes\": {\"a\": 1e999}}\n{\"unit_id\": \"\\ud800\"}\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		rows, bad, fatal := readList(t, newNDJSONList(bytes.NewReader(data)))
		for _, r := range rows {
			checkRow(t, r)
		}
		if fatal != nil {
			return
		}
		// Every non-blank line is a row or a bad row, in order.
		lines := 0
		for _, l := range bytes.Split(data, []byte("\n")) {
			if len(bytes.TrimSpace(l)) > 0 {
				lines++
			}
		}
		if len(rows)+len(bad) != lines {
			t.Fatalf("%d rows and %d bad rows of %d lines", len(rows), len(bad), lines)
		}
	})
}

func FuzzCSVList(f *testing.F) {
	for _, s := range []string{
		"unit_id,country,orders:number,vip:boolean,meta:json,address.city\nc-1,FR,3,true,\"{\"\"a\"\":1}\",Paris\nc-2,,,,,\n",
		"\ufeffunit_id\r\nc-1\r\n\"c,2\"\r\n",
		"unit_id,a\nc-1\n\"x\ny\",z\n",
		"unit_id,a:int\n", "a,a.b,unit_id\n1,2,3\n", "unit_id,orders:number\nc,1e400\nd,NaN\n",
		"unit_id,x\nc,\"bad\"quote\n", "",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		rows, _, _ := readList(t, newCSVList(bytes.NewReader(data)))
		for _, r := range rows {
			checkRow(t, r)
		}
		// An accepted row's unit id is the id column encoding/csv reads.
		if len(rows) == 0 {
			return
		}
		cr := csv.NewReader(bytes.NewReader(data))
		cr.FieldsPerRecord = -1
		var recs [][]string
		for {
			rec, err := cr.Read()
			if err != nil {
				break // records up to the first syntax error, as the list reader
			}
			recs = append(recs, rec)
		}
		ids := map[string]bool{}
		if len(recs) > 0 {
			for i, h := range recs[0] {
				h = strings.TrimSpace(strings.TrimPrefix(h, "\ufeff"))
				if h == "unit_id" {
					for _, rec := range recs[1:] {
						if i < len(rec) {
							ids[rec[i]] = true
						}
					}
				}
			}
		}
		for _, r := range rows {
			if !ids[r.UnitID] {
				t.Fatalf("row %+v: unit id is not in the id column", r)
			}
		}
	})
}

// FuzzNDJSONFastPath: what the fast decoder accepts, the slow path
// (strictjson, then encoding/json) accepts too, with the same row.
func FuzzNDJSONFastPath(f *testing.F) {
	for _, s := range []string{
		`{"unit_id": "cust-00000042", "attributes": {"country": "FR", "orders": 3}}`,
		`{"attributes": {"a": -0.5, "b": true, "c": false, "d": null, "e": ""}, "unit_id": "x"}`,
		`{"unit_id": "x", "attributes": null}`, `{"unit_id": "x", "attributes": {}}`, `{"unit_id": "x"}`,
		`{"unit_id": "x", "attributes": {"a": 1, "a": 2}}`, `{"unit_id": "x", "unit_id": "y"}`,
		`{"unit_id": "x", "attributes": {"a": 01}}`, `{"unit_id": "x", "attributes": {"a": 1e5}}`,
		`{"unit_id": "é\u00e9", "attributes": {"a": "\x01"}}`, `{"unit_id": ""}`, `{}`, ` { "unit_id" : "x" } `,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var fast listRow
		if !decodeFastRow(data, &fast) {
			return
		}
		var r ndjsonRow
		if bad := strictjson.Decode(data, &r, listJSON); bad != nil {
			t.Fatalf("fast path accepted %q, the slow path refuses it: %v", data, bad)
		}
		if r.UnitID == nil || *r.UnitID != fast.UnitID || !reflect.DeepEqual(r.Attributes, fast.Attrs) {
			t.Fatalf("%q: fast path %q %#v, slow path %v %#v", data, fast.UnitID, fast.Attrs, r.UnitID, r.Attributes)
		}
	})
}
