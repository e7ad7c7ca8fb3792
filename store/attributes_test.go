package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/flywheel-oss/flywheel"
)

func TestExposureAttributes(t *testing.T) {
	db := newDB(t)
	ts := time.Date(2026, 12, 5, 9, 0, 0, 0, time.UTC)
	mustWrite(t, db,
		exposure("customer", "c-1", "attrs", "a", ts, `{"device":"mobile","country":"FR"}`),
		exposure("customer", "c-2", "attrs", "b", ts, `{"device":"web"}`),
		exposure("customer", "c-3", "attrs", "a", ts, ``),
		exposure("customer", "c-4", "attrs", "b", ts, `{"plan":{"tier":1},"device":"ios"}`),
		exposure("customer", "c-1", "other", "a", ts, `{"channel":"email"}`),
	)
	// A later exposure does not change the unit's attributes: its first does.
	mustWrite(t, db, exposure("customer", "c-2", "attrs", "b", ts.Add(time.Hour), `{"country":"DE"}`))
	type attr = flywheel.ExposureAttribute
	for _, tt := range []struct {
		exp    string
		sample int
		want   []attr
		read   int64
	}{
		{"attrs", 100, []attr{{Name: "device", Units: 3}, {Name: "country", Units: 1}, {Name: "plan", Units: 1}}, 4},
		{"attrs", 2, []attr{{Name: "device", Units: 2}, {Name: "country", Units: 1}}, 2}, // c-1 and c-2, in unit order
		{"other", 100, []attr{{Name: "channel", Units: 1}}, 1},
		{"nothing", 100, []attr{}, 0},
	} {
		got, read, err := db.ExposureAttributes(context.Background(), tt.exp, tt.sample)
		if err != nil {
			t.Fatalf("ExposureAttributes(%s, %d): %v", tt.exp, tt.sample, err)
		}
		if diff := cmp.Diff(tt.want, got); diff != "" || read != tt.read {
			t.Errorf("ExposureAttributes(%s, %d) read %d (want %d), attributes (-want +got):\n%s", tt.exp, tt.sample, read, tt.read, diff)
		}
	}
}
