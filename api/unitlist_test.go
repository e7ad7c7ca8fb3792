package api

import (
	"context"
	"errors"
	"io"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/flywheel-oss/flywheel"
	"github.com/flywheel-oss/flywheel/ingest"
)

func TestCSVListAttributes(t *testing.T) {
	tests := []struct {
		name, list string
		want       []listRow
	}{
		{"text by default", "unit_id,country\nc-1,FR\n", []listRow{{Line: 2, UnitID: "c-1", Attrs: map[string]any{"country": "FR"}}}},
		{"typed columns", "orders:number,unit_id,vip:boolean,meta:json\n3.5,c-1,TRUE,\"{\"\"a\"\": [1]}\"\n",
			[]listRow{{Line: 2, UnitID: "c-1", Attrs: map[string]any{"orders": 3.5, "vip": true, "meta": map[string]any{"a": []any{1.0}}}}}},
		{"zip codes stay text", "unit_id,zip\nc-1,01234\n", []listRow{{Line: 2, UnitID: "c-1", Attrs: map[string]any{"zip": "01234"}}}},
		{"empty cells are absent", "unit_id,country,orders:number\nc-1,,\n", []listRow{{Line: 2, UnitID: "c-1"}}},
		{"dotted headers nest", "unit_id,address.city,address.zip\nc-1,Paris,75001\n",
			[]listRow{{Line: 2, UnitID: "c-1", Attrs: map[string]any{"address": map[string]any{"city": "Paris", "zip": "75001"}}}}},
		{"quoted fields, CRLF, BOM", "\ufeffunit_id,note\r\n\"c,1\",\"two\nlines\"\r\nc-2,x\r\n",
			[]listRow{{Line: 2, UnitID: "c,1", Attrs: map[string]any{"note": "two\nlines"}}, {Line: 4, UnitID: "c-2", Attrs: map[string]any{"note": "x"}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := newCSVList(strings.NewReader(tt.list))
			var got []listRow
			for {
				var r listRow
				err := l.Next(&r)
				if errors.Is(err, io.EOF) {
					break
				}
				if err != nil {
					t.Fatalf("Next = %v", err)
				}
				got = append(got, r)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("rows = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestCampaignExposureID(t *testing.T) {
	sent := time.Date(2026, 12, 4, 9, 0, 0, 0, time.UTC)
	start := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	base := campaignExposureID("promo", "c-1", sent, sent)
	if again := campaignExposureID("promo", "c-1", sent, sent); again != base {
		t.Errorf("campaignExposureID is not deterministic: %s, then %s", base, again)
	}
	if base.Version() != 7 || base.Variant() != uuid.RFC4122 {
		t.Errorf("id %s: version %d variant %v, want a UUIDv7", base, base.Version(), base.Variant())
	}
	if sec, nsec := base.Time().UnixTime(); time.Unix(sec, nsec).UTC() != sent {
		t.Errorf("id %s holds time %v, want sent_at %v", base, time.Unix(sec, nsec).UTC(), sent)
	}
	others := map[string]uuid.UUID{
		"another experiment":      campaignExposureID("promo2", "c-1", sent, sent),
		"another unit":            campaignExposureID("promo", "c-2", sent, sent),
		"another send":            campaignExposureID("promo", "c-1", sent.Add(time.Microsecond), sent),
		"no sent_at":              campaignExposureID("promo", "c-1", time.Time{}, start),
		"ids that join the parts": campaignExposureID("prom", "o\x00c-1", sent, sent),
	}
	for name, id := range others {
		if id == base {
			t.Errorf("%s: same id %s", name, id)
		}
	}
}

// failingReader returns err after its text.
type failingReader struct {
	text string
	err  error
}

func (f *failingReader) Read(p []byte) (int, error) {
	if f.text == "" {
		return 0, f.err
	}
	n := copy(p, f.text)
	f.text = f.text[n:]
	return n, nil
}

// TestAssignListBodyErrors: a body past its limit is a 413, another read
// error a 400, from either reader, after good rows.
func TestAssignListBodyErrors(t *testing.T) {
	s := &Server{deps: Deps{Validator: &ingest.Validator{}, OptOuts: ingest.NewOptOuts(nil)}}
	exp := listExperiment{key: "x", unitType: "customer"}
	for _, tt := range []struct {
		name string
		err  error
		want flywheel.Code
	}{
		{"too large", &http.MaxBytesError{Limit: maxListBody}, flywheel.CodePayloadTooLarge},
		{"connection reset", errors.New("connection reset by peer"), flywheel.CodeInvalidArgument},
	} {
		for _, format := range []listFormat{formatNDJSON, formatCSV} {
			text := "{\"unit_id\": \"c-1\"}\n"
			var list listReader = newNDJSONList(&failingReader{text: text, err: tt.err})
			if format == formatCSV {
				text = "unit_id\nc-1\n"
				list = newCSVList(&failingReader{text: text, err: tt.err})
			}
			sp, err := newListSpool(format, false)
			if err != nil {
				t.Fatal(err)
			}
			_, err = s.assignList(context.Background(), list, exp, listOptions{}, sp)
			sp.close()
			if got := flywheel.ErrorCode(err); got != tt.want {
				t.Errorf("%s, format %d: %v (code %s), want %s", tt.name, format, err, got, tt.want)
			}
		}
	}
}
