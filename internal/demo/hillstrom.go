package demo

import (
	"bytes"
	"compress/gzip"
	_ "embed"
	"encoding/csv"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"strconv"
	"time"
)

// hillstromCSV is Kevin Hillstrom's MineThatData e-mail test, gzipped
// (data/README.md: provenance, terms, columns).
//
//go:embed data/hillstrom.csv.gz
var hillstromCSV []byte

// HillstromRows is the number of customers in the file.
const HillstromRows = 64000

// HillstromRow is one customer of the e-mail test. Money is in dollars.
type HillstromRow struct {
	Recency        int     // months since the last purchase
	HistorySegment string  // a bucket of History, e.g. "2) $100 - $200"
	History        float64 // dollars spent in the year before the send
	Mens, Womens   bool    // bought men's / women's merchandise that year
	ZipCode        string  // Urban, Surburban [sic], Rural
	Newbie         bool    // a new customer in the twelve months before
	Channel        string  // Phone, Web, Multichannel
	Segment        string  // the arm: "Mens E-Mail", "Womens E-Mail", "No E-Mail"
	Visit          bool    // visited the site in the two weeks after the send
	Conversion     bool    // bought in those two weeks
	Spend          float64 // dollars spent in those two weeks
}

// Arm is the experiment's variant key of the row's arm.
func (r HillstromRow) Arm() string {
	return hillstromArms[r.Segment]
}

// hillstromArms maps the file's segment column to variant keys.
var hillstromArms = map[string]string{"No E-Mail": "control", "Mens E-Mail": "mens", "Womens E-Mail": "womens"}

// hillstromHeader is the file's header, in order.
var hillstromHeader = []string{"recency", "history_segment", "history", "mens", "womens", "zip_code", "newbie",
	"channel", "segment", "visit", "conversion", "spend"}

// Hillstrom reads the embedded file, checking every value.
func Hillstrom() ([]HillstromRow, error) {
	zr, err := gzip.NewReader(bytes.NewReader(hillstromCSV))
	if err != nil {
		return nil, fmt.Errorf("hillstrom.csv.gz: %w", err)
	}
	r := csv.NewReader(zr)
	r.ReuseRecord = true
	head, err := r.Read()
	if err != nil {
		return nil, fmt.Errorf("hillstrom.csv: header: %w", err)
	}
	if !slices.Equal(head, hillstromHeader) {
		return nil, fmt.Errorf("hillstrom.csv: header %q, want %q", head, hillstromHeader)
	}
	rows := make([]HillstromRow, 0, HillstromRows)
	for line := 2; ; line++ {
		rec, err := r.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("hillstrom.csv: %w", err)
		}
		row, err := parseHillstrom(rec)
		if err != nil {
			return nil, fmt.Errorf("hillstrom.csv line %d: %w", line, err)
		}
		rows = append(rows, row)
	}
	if len(rows) != HillstromRows {
		return nil, fmt.Errorf("hillstrom.csv: %d rows, want %d", len(rows), HillstromRows)
	}
	return rows, nil
}

func parseHillstrom(rec []string) (HillstromRow, error) {
	var row HillstromRow
	var errs []error
	num := func(i int) float64 {
		v, err := strconv.ParseFloat(rec[i], 64)
		if err != nil || v < 0 {
			errs = append(errs, fmt.Errorf("%s %q is not a non-negative number", hillstromHeader[i], rec[i]))
		}
		return v
	}
	flag := func(i int) bool {
		if rec[i] != "0" && rec[i] != "1" {
			errs = append(errs, fmt.Errorf("%s %q is not 0 or 1", hillstromHeader[i], rec[i]))
		}
		return rec[i] == "1"
	}
	row.Recency = int(num(0))
	row.HistorySegment = rec[1]
	row.History = num(2)
	row.Mens, row.Womens = flag(3), flag(4)
	row.ZipCode = rec[5]
	row.Newbie = flag(6)
	row.Channel = rec[7]
	row.Segment = rec[8]
	row.Visit, row.Conversion = flag(9), flag(10)
	row.Spend = num(11)
	if row.Arm() == "" {
		errs = append(errs, fmt.Errorf("segment %q is not one of the three arms", rec[8]))
	}
	if row.Conversion && !row.Visit || row.Conversion != (row.Spend > 0) {
		errs = append(errs, fmt.Errorf("conversion %s, visit %s and spend %s disagree", rec[10], rec[9], rec[11]))
	}
	if len(errs) > 0 {
		return row, errs[0]
	}
	return row, nil
}

// The events of one row. The send is spread over two weeks of exposures
// (the first 14 of the 28 days before the anchor) so that the results have
// a timeline; the outcomes fall in the 336 h (two-week) window after each
// customer's exposure, as in the original test, so every window has passed
// at the anchor.
const (
	hillstromSpread = 14 * 24 * time.Hour
	hillstromWindow = 336            // hours, the metrics' window
	hillstromSeed   = 0x6869_6c6c    // "hill"
	historyBefore   = 24 * time.Hour // history's purchase event, before the exposure
)

// HillstromUnitID is the customer id of row i (0-based).
func HillstromUnitID(i int) string { return fmt.Sprintf("hillstrom-%05d", i+1) }

// hillstromEvents returns the events of every row: an exposure to the
// row's own arm carrying its segments (channel, zip_code, newbie,
// history_segment: the file's bucket of the year's spend); its
// history as one purchase event of that value a day before the exposure,
// inside the CUPED period of the spend metric, so that spend's pre-period
// value is exactly history; a visit event if it visited; a purchase of
// its spend if it bought.
func hillstromEvents(rows []HillstromRow, anchor time.Time) []event {
	start := anchor.Add(-28 * 24 * time.Hour)
	out := make([]event, 0, 2*len(rows)+len(rows)/5)
	for i, row := range rows {
		rng := rand.New(rand.NewPCG(hillstromSeed, uint64(i)))
		id := HillstromUnitID(i)
		t0 := start.Add(uniform(rng, 0, hillstromSpread)).Truncate(time.Millisecond)
		newbie := 0
		if row.Newbie {
			newbie = 1
		}
		attrs := map[string]any{"channel": row.Channel, "zip_code": row.ZipCode, "newbie": newbie, "history_segment": row.HistorySegment}
		out = append(out,
			track(id+"/history", "purchase", ptr(row.History), "customer", id, t0.Add(-historyBefore)),
			exposure(id+"/exposure", "hillstrom-email", row.Arm(), "customer", id, t0, attrs))
		if row.Visit {
			tv := t0.Add(uniform(rng, time.Hour, 13*24*time.Hour)).Truncate(time.Millisecond)
			out = append(out, track(id+"/visit", "visit", nil, "customer", id, tv))
			if row.Conversion {
				tp := tv.Add(uniform(rng, 5*time.Minute, 20*time.Hour)).Truncate(time.Millisecond)
				out = append(out, track(id+"/purchase", "purchase", ptr(row.Spend), "customer", id, tp))
			}
		}
	}
	return out
}

// uniform draws a duration in [lo, hi).
func uniform(rng *rand.Rand, lo, hi time.Duration) time.Duration {
	return lo + time.Duration(rng.Int64N(int64(hi-lo)))
}
