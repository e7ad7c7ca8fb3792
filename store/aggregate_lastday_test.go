package store

import (
	"slices"
	"testing"
)

// TestMoveLast: a fold's new days and a unit's stored last day give the
// unit's new last day and the day rows to add to, in day order.
func TestMoveLast(t *testing.T) {
	day := func(d int32, n float64) foldDay { return foldDay{day: d, n: n, v: 10 * n, nm: 100 * n, dn: 1000 * n} }
	none := foldDay{day: noDay}
	for _, c := range []struct {
		name   string
		last   foldDay
		days   []foldDay
		want   foldDay
		closed []foldDay
	}{
		{"first day", none, []foldDay{day(5, 1)}, day(5, 1), nil},
		{"first days", none, []foldDay{day(5, 1), day(7, 2)}, day(7, 2), []foldDay{day(5, 1)}},
		{"on the last day", day(5, 3), []foldDay{day(5, 1)}, day(5, 4), nil},
		{"the next day", day(5, 3), []foldDay{day(6, 1)}, day(6, 1), []foldDay{day(5, 3)}},
		{"the last day and the next", day(5, 3), []foldDay{day(5, 1), day(6, 2)}, day(6, 2), []foldDay{day(5, 4)}},
		{"late, the last day and later", day(5, 3), []foldDay{day(2, 1), day(5, 1), day(8, 2), day(9, 1)}, day(9, 1),
			[]foldDay{day(2, 1), day(5, 4), day(8, 2)}},
		{"late and later, none on the last day", day(5, 3), []foldDay{day(2, 1), day(7, 2), day(9, 1)}, day(9, 1),
			[]foldDay{day(2, 1), day(5, 3), day(7, 2)}},
		{"late only", day(5, 3), []foldDay{day(1, 1), day(4, 2)}, day(5, 3), []foldDay{day(1, 1), day(4, 2)}},
		{"late and on the last day", day(5, 3), []foldDay{day(4, 2), day(5, 1)}, day(5, 4), []foldDay{day(4, 2)}},
	} {
		t.Run(c.name, func(t *testing.T) {
			u := &foldUnit{last: c.last, days: c.days}
			var closed []foldDay
			got := u.moveLast(func(d foldDay) { closed = append(closed, d) })
			if got != c.want || !slices.Equal(closed, c.closed) {
				t.Errorf("moveLast = %+v, closed %+v; want %+v, %+v", got, closed, c.want, c.closed)
			}
		})
	}
}
