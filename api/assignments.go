package api

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/flywheel-oss/flywheel"
	"github.com/flywheel-oss/flywheel/assign"
	"github.com/flywheel-oss/flywheel/ingest"
	"github.com/flywheel-oss/flywheel/live"
)

// assignmentsRoute is the batch assignment route (campaign lists); its
// requests get Deps.ListTimeout instead of RequestTimeout.
const assignmentsRoute = "/v1/experiments/:key/assignments"

// Limits of a list request beyond its rows (unitlist.go).
const (
	// maxListBody is the largest list body, in bytes.
	maxListBody = 2 << 30
	// maxBadRows is how many bad rows an error lists.
	maxBadRows = 100
	// exposureChunk is how many exposures go to the ingester at once, and
	// exposureInFlight how many chunks wait for their commit together.
	exposureChunk    = 5000
	exposureInFlight = 4
)

// listFormat is how a list is written: NDJSON or CSV.
type listFormat int

const (
	formatNDJSON listFormat = iota
	formatCSV
)

func (f listFormat) contentType() string {
	if f == formatCSV {
		return "text/csv; charset=utf-8"
	}
	return "application/x-ndjson"
}

// listOptions are the query and headers of a list request.
type listOptions struct {
	in, out listFormat
	record  bool
	sentAt  time.Time // zero: not given
}

func parseListOptions(c *gin.Context, now time.Time) (listOptions, error) {
	var o listOptions
	mt, _, _ := mime.ParseMediaType(c.GetHeader("Content-Type"))
	switch mt {
	case "application/x-ndjson", "application/jsonl", "application/json-lines", "application/ndjson":
		o.in = formatNDJSON
	case "text/csv":
		o.in = formatCSV
	case "":
		return o, flywheel.Invalid("Content-Type", "Content-Type is required: application/x-ndjson (one {\"unit_id\": ..., \"attributes\": {...}} per line) or text/csv (a header with a unit_id column)")
	default:
		return o, flywheel.Invalid("Content-Type", "Content-Type must be application/x-ndjson or text/csv, not %q", mt)
	}
	out, ok := acceptedFormat(c.GetHeader("Accept"))
	if !ok {
		return o, flywheel.Invalid("Accept", "Accept must allow application/x-ndjson or text/csv")
	}
	o.out = out
	for name := range c.Request.URL.Query() {
		if name != "record_exposure" && name != "sent_at" {
			return o, flywheel.Invalid(name, "unknown query parameter %q (record_exposure and sent_at are known)", name)
		}
	}
	if v, given := c.GetQuery("record_exposure"); given {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return o, flywheel.Invalid("record_exposure", "record_exposure must be true or false, not %q", v)
		}
		o.record = b
	}
	if v, given := c.GetQuery("sent_at"); given {
		if !o.record {
			return o, flywheel.Invalid("sent_at", "sent_at is the time exposures are recorded at: it goes with record_exposure=true")
		}
		t, err := time.Parse(time.RFC3339Nano, v)
		switch {
		case err != nil:
			return o, flywheel.Invalid("sent_at", "sent_at must be an RFC 3339 time such as 2026-12-04T09:00:00Z, not %q", v)
		case t.After(now.Add(ingest.MaxFuture)):
			return o, flywheel.Invalid("sent_at", "sent_at is more than 24 h in the future (server time %s)", now.Format(time.RFC3339))
		case t.Year() < 2000:
			return o, flywheel.Invalid("sent_at", "sent_at is before the year 2000")
		}
		o.sentAt = t.UTC().Truncate(time.Microsecond) // what the database keeps
	}
	return o, nil
}

// acceptedFormat picks the answer's format from an Accept header: the
// first of text/csv, application/x-ndjson (or its aliases, or
// application/json) and */* it lists; NDJSON when there is none.
func acceptedFormat(accept string) (listFormat, bool) {
	if strings.TrimSpace(accept) == "" {
		return formatNDJSON, true
	}
	for _, part := range strings.Split(accept, ",") {
		mt, _, err := mime.ParseMediaType(strings.TrimSpace(part))
		if err != nil {
			continue
		}
		switch mt {
		case "text/csv":
			return formatCSV, true
		case "application/x-ndjson", "application/jsonl", "application/json-lines", "application/ndjson", "application/json", "*/*", "application/*":
			return formatNDJSON, true
		}
	}
	return formatNDJSON, false
}

// listExperiment is what a list is assigned against.
type listExperiment struct {
	key      string
	unitType string
	running  bool
	started  time.Time
	snap     *assign.Snapshot
	// bandit: a unit keeps the arm of its recorded exposure (as in
	// POST /v1/assign), looked up for a thousand rows at a time.
	bandit bool
}

// findListExperiment finds the experiment of a list in the live state, or
// in the store when it is archived (then nothing is enrolled).
func (s *Server) findListExperiment(ctx context.Context, st *live.State, key string) (listExperiment, error) {
	e, known := st.Experiment(key)
	if !known {
		var err error
		if e, err = s.deps.Store.FindExperimentByKey(ctx, key); err != nil {
			return listExperiment{}, err
		}
	}
	x := listExperiment{key: key, unitType: e.UnitType, running: known && e.Status == flywheel.StatusRunning, snap: st.Snapshot,
		bandit: e.Allocation == flywheel.AllocationBandit}
	if e.StartedAt != nil {
		x.started = *e.StartedAt
	}
	return x, nil
}

// handleAssignList answers POST /v1/experiments/{key}/assignments: every
// unit of a list, in order, with the decision POST /v1/assign gives, and
// with record_exposure=true an exposure for each enrolled unit, exactly
// once. The whole list is read and checked before anything is answered or
// recorded: a list with a bad row is refused (400, every bad line named)
// and changes nothing. Memory stays bounded: the answer and the exposures
// are spooled to temporary files while the list is read.
func (s *Server) handleAssignList(c *gin.Context) {
	ctx := c.Request.Context()
	now := s.deps.Clock().UTC()
	opts, err := parseListOptions(c, now)
	if err != nil {
		s.writeError(c, err)
		return
	}
	st := s.deps.Live.Current()
	if st == nil {
		s.writeError(c, flywheel.Errorf(flywheel.CodeUnavailable, "configuration not loaded yet; retry"))
		return
	}
	exp, err := s.findListExperiment(ctx, st, c.Param("key"))
	if err != nil {
		s.writeError(c, err)
		return
	}
	if opts.record {
		switch {
		case !exp.running:
			s.writeError(c, flywheel.Errorf(flywheel.CodeConflict, "experiment %q is not running: exposures are recorded only for a running experiment (start it, or assign without record_exposure)", exp.key))
			return
		case !opts.sentAt.IsZero() && opts.sentAt.Before(exp.started.Truncate(time.Second)):
			s.writeError(c, flywheel.Invalid("sent_at", "sent_at %s is before the experiment started (%s)", opts.sentAt.Format(time.RFC3339), exp.started.Format(time.RFC3339)))
			return
		}
	}
	// A list takes longer to send than the server's usual deadlines allow.
	rc := http.NewResponseController(c.Writer)
	_ = rc.SetReadDeadline(time.Now().Add(s.deps.ListTimeout))
	_ = rc.SetWriteDeadline(time.Now().Add(s.deps.ListTimeout))

	sp, err := newListSpool(opts.out, opts.record)
	if err != nil {
		s.writeError(c, fmt.Errorf("assignments: spool: %w", err))
		return
	}
	defer sp.close()
	body := http.MaxBytesReader(c.Writer, c.Request.Body, maxListBody)
	var list listReader
	if opts.in == formatCSV {
		list = newCSVList(body)
	} else {
		list = newNDJSONList(body)
	}
	sum, err := s.assignList(ctx, list, exp, opts, sp)
	if err != nil {
		s.writeError(c, err)
		return
	}
	if err := sp.finish(); err != nil {
		s.writeError(c, fmt.Errorf("assignments: spool: %w", err))
		return
	}
	recorded, duplicates, dropped := 0, 0, 0
	if opts.record {
		if recorded, duplicates, dropped, err = s.recordListExposures(ctx, exp, opts, sp, now); err != nil {
			s.writeError(c, err)
			return
		}
	}
	h := c.Writer.Header()
	h.Set("Content-Type", opts.out.contentType())
	h.Set("Content-Length", strconv.FormatInt(sp.outSize, 10))
	h.Set("X-Flywheel-Units", strconv.Itoa(sum.units))
	h.Set("X-Flywheel-Enrolled", strconv.Itoa(sum.enrolled))
	if opts.record {
		h.Set("X-Flywheel-Exposures-Recorded", strconv.Itoa(recorded))
		h.Set("X-Flywheel-Exposures-Duplicates", strconv.Itoa(duplicates))
		h.Set("X-Flywheel-Exposures-Dropped", strconv.Itoa(dropped))
	}
	c.Status(http.StatusOK)
	if _, err := sp.out.Seek(0, io.SeekStart); err != nil {
		s.deps.Logger.ErrorContext(ctx, "assignments: rewind the answer", "request_id", requestID(c), "err", err)
		return
	}
	if _, err := io.Copy(c.Writer, sp.out); err != nil {
		// Headers are out: the client sees a short body (Content-Length).
		s.deps.Logger.WarnContext(ctx, "assignments: answer cut short", "request_id", requestID(c), "err", err)
	}
}

// listSummary counts a list's units.
type listSummary struct{ units, enrolled int }

// assignList reads the list, assigns every row, and spools the answer
// and the exposures to record. It returns the list's bad rows as one
// invalid_argument error (the first bad row, and up to maxBadRows in
// Details), or a fatal problem of the list.
func (s *Server) assignList(ctx context.Context, list listReader, exp listExperiment, opts listOptions, sp *listSpool) (listSummary, error) {
	var (
		sum     listSummary
		row     listRow
		bad     []flywheel.Error
		badRows int
		ids     = s.deps.Validator.IDs
		pending []listDecision // a bandit's rows waiting for their recorded arms
	)
	// emit writes a decided row: its answer, and with record_exposure its
	// exposure and its holdout arms (on the list's unit type).
	emit := func(d listDecision) error {
		if d.r.Enrolled {
			sum.enrolled++
		}
		if err := sp.writeAnswer(d.unitID, d.r); err != nil {
			return fmt.Errorf("assignments: spool: %w", err)
		}
		if !opts.record {
			return nil
		}
		var xs [][2]string // experiment ("" = the list's), variant
		if d.r.Enrolled {
			xs = append(xs, [2]string{"", d.r.Variant})
		}
		for _, a := range appendHoldoutArms(nil, exp.snap, exp.key, d.r) {
			if a.h.UnitType() == exp.unitType {
				xs = append(xs, [2]string{assign.HoldoutPrefix + a.h.Key(), a.arm})
			}
		}
		for _, x := range xs {
			if err := sp.writeExposure(d.storedID, x[0], x[1], d.attrs); err != nil {
				var fe *flywheel.Error
				if errors.As(err, &fe) {
					fe.Field = fmt.Sprintf("lines[%d].attributes", d.line)
					fe.Message = fmt.Sprintf("line %d: %s", d.line, fe.Message)
					if badRows++; len(bad) < maxBadRows {
						bad = append(bad, *fe)
					}
					return nil
				}
				return fmt.Errorf("assignments: spool: %w", err)
			}
		}
		return nil
	}
	// flush gives a bandit's pending rows the arms their units were first
	// recorded in, then writes them in order.
	flush := func() error {
		if len(pending) == 0 {
			return nil
		}
		var look []string
		for _, d := range pending {
			if d.r.Reason == assign.ReasonBucket || d.r.Reason == assign.ReasonTraffic {
				look = append(look, d.storedID)
			}
		}
		arms, err := s.deps.Store.ExposedVariants(ctx, exp.key, look)
		if err != nil {
			return err
		}
		c, _ := exp.snap.Lookup(exp.key)
		for _, d := range pending {
			if v, ok := arms[d.storedID]; ok && c != nil && (d.r.Reason == assign.ReasonBucket || d.r.Reason == assign.ReasonTraffic) && v != d.r.Variant {
				if i := slices.IndexFunc(c.Definition().Variants, func(x assign.Variant) bool { return x.Key == v }); i >= 0 {
					if first, ok := c.Enrolled(i); ok {
						d.r = first
					}
				}
			}
			if badRows == 0 {
				if err := emit(d); err != nil {
					return err
				}
			}
		}
		pending = pending[:0]
		return nil
	}
	for {
		err := list.Next(&row)
		if err == io.EOF {
			break
		}
		var re *rowError
		switch {
		case errors.As(err, &re):
			badRows++
			if len(bad) < maxBadRows {
				field := fmt.Sprintf("lines[%d]", re.Line)
				if re.Field != "" {
					field += "." + re.Field
				}
				bad = append(bad, flywheel.Error{Code: flywheel.CodeInvalidArgument, Field: field, Message: re.Error()})
			}
			continue
		case err != nil:
			var fatal *fatalListError
			var mbe *http.MaxBytesError
			switch {
			case errors.As(err, &fatal):
				return sum, badListError(append(bad, *fatal.err), badRows+1)
			case errors.As(err, &mbe):
				return sum, flywheel.Errorf(flywheel.CodePayloadTooLarge, "the list is larger than %d bytes; split it", int64(maxListBody))
			}
			return sum, flywheel.Invalid("", "reading the list: %v", err)
		}
		if sum.units++; sum.units > maxListRows {
			return sum, flywheel.Errorf(flywheel.CodePayloadTooLarge, "a list may hold at most %d units; split it", maxListRows)
		}
		if badRows > 0 {
			continue // the list is refused: only look for more bad rows
		}
		storedID := ids.ID(row.UnitID)
		var r assign.Result
		switch {
		case !exp.running:
			r = assign.Result{Reason: assign.ReasonNotRunning}
		case s.deps.OptOuts.Has(exp.unitType, storedID):
			r = assign.Result{Reason: assign.ReasonOptedOut}
		default:
			r = exp.snap.Assign(exp.key, row.UnitID, row.Attrs)
		}
		d := listDecision{unitID: row.UnitID, storedID: storedID, attrs: row.Attrs, line: row.Line, r: r}
		if !exp.bandit || !exp.running {
			if err := emit(d); err != nil {
				return sum, err
			}
			continue
		}
		pending = append(pending, d)
		if len(pending) == banditLookupBatch {
			if err := flush(); err != nil {
				return sum, err
			}
		}
	}
	if err := flush(); err != nil {
		return sum, err
	}
	if badRows > 0 {
		return sum, badListError(bad, badRows)
	}
	return sum, nil
}

// listDecision is a row's decision, before it is written.
type listDecision struct {
	unitID, storedID string
	attrs            map[string]any
	line             int
	r                assign.Result
}

// banditLookupBatch is how many rows of a bandit's list share one lookup
// of their recorded arms.
const banditLookupBatch = 1000

// badListError is the 400 of a list with bad rows.
func badListError(bad []flywheel.Error, n int) error {
	first := bad[0]
	e := &flywheel.Error{Code: flywheel.CodeInvalidArgument, Field: first.Field, Message: first.Message}
	if n > 1 {
		e.Message = fmt.Sprintf("%s (and %d more bad rows; the first %d are in details; nothing was assigned or recorded)", first.Message, n-1, len(bad))
		e.Details = bad
	} else {
		e.Message += " (nothing was assigned or recorded)"
	}
	return e
}

// recordListExposures sends the spooled exposures through the ingestion
// path, a few chunks at a time, and returns how many were new, how many
// were recorded before (a retry), and how many were dropped because the
// unit opted out since it was assigned. Ids derived from (experiment,
// unit, sent_at) make a retry record nothing twice.
func (s *Server) recordListExposures(ctx context.Context, exp listExperiment, opts listOptions, sp *listSpool, now time.Time) (recorded, duplicates, dropped int, err error) {
	ts, idTime := now, exp.started
	if !opts.sentAt.IsZero() {
		ts, idTime = opts.sentAt, opts.sentAt
	}
	type result struct {
		n, accepted int
		err         error
	}
	results := make(chan result, exposureInFlight)
	inFlight := 0
	collect := func() {
		r := <-results
		inFlight--
		if r.err != nil && err == nil {
			err = r.err
		}
		recorded += r.accepted
		duplicates += r.n - r.accepted
	}
	submit := func(events []flywheel.Event) {
		inFlight++
		go func() {
			acc, err := s.submitRetrying(ctx, events)
			results <- result{n: len(events), accepted: len(acc), err: err}
		}()
	}
	if err := sp.rewindExposures(); err != nil {
		return 0, 0, 0, fmt.Errorf("assignments: spool: %w", err)
	}
	events := make([]flywheel.Event, 0, exposureChunk)
	for err == nil {
		x, more, rerr := sp.readExposure()
		if rerr != nil {
			err = fmt.Errorf("assignments: spool: %w", rerr)
			break
		}
		if !more {
			break
		}
		if s.deps.OptOuts.Has(exp.unitType, x.unitID) {
			dropped++ // opted out since it was assigned
			continue
		}
		experiment := exp.key
		if x.experiment != "" {
			experiment = x.experiment // a holdout arm
		}
		events = append(events, flywheel.Event{
			ID: campaignExposureID(experiment, x.unitID, opts.sentAt, idTime), Type: flywheel.EventExposure,
			UnitType: exp.unitType, UnitID: x.unitID, Timestamp: ts, ReceivedAt: now,
			Experiment: experiment, Variant: x.variant, Attributes: x.attrs,
		})
		if len(events) == exposureChunk {
			if inFlight == exposureInFlight {
				collect()
			}
			submit(events)
			events = make([]flywheel.Event, 0, exposureChunk)
		}
	}
	if err == nil && len(events) > 0 {
		submit(events)
	}
	for inFlight > 0 {
		collect()
	}
	s.deps.Ingest.Count(string(flywheel.EventExposure), "dropped_opted_out", dropped)
	if err != nil {
		return 0, 0, 0, err
	}
	return recorded, duplicates, dropped, nil
}

// submitRetrying submits events, waiting while the ingestion queue is full
// (other traffic) rather than failing a long list for it.
func (s *Server) submitRetrying(ctx context.Context, events []flywheel.Event) ([]int, error) {
	for pause := 20 * time.Millisecond; ; pause = min(2*pause, time.Second) {
		acc, err := s.deps.Ingest.Submit(ctx, events)
		if flywheel.ErrorCode(err) != flywheel.CodeOverloaded {
			return acc, err
		}
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(pause):
		}
	}
}

// listSpool holds a list's answer and its exposures to record in
// temporary files, so that memory stays bounded whatever the list's size.
type listSpool struct {
	format  listFormat
	out     *os.File
	outW    *bufio.Writer
	outCSV  *csvAnswer
	outSize int64
	exp     *os.File
	expW    *bufio.Writer
	expR    *bufio.Reader
	line    []byte
}

func newListSpool(f listFormat, exposures bool) (*listSpool, error) {
	sp := &listSpool{format: f}
	var err error
	if sp.out, err = os.CreateTemp("", "flywheel-assignments-*"); err != nil {
		return nil, err
	}
	sp.outW = bufio.NewWriterSize(sp.out, 256<<10)
	if f == formatCSV {
		sp.outCSV = newCSVAnswer(sp.outW)
	}
	if exposures {
		if sp.exp, err = os.CreateTemp("", "flywheel-exposures-*"); err != nil {
			sp.close()
			return nil, err
		}
		sp.expW = bufio.NewWriterSize(sp.exp, 256<<10)
	}
	return sp, nil
}

func (sp *listSpool) close() {
	for _, f := range []*os.File{sp.out, sp.exp} {
		if f != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}
}

// writeAnswer appends one answer line.
func (sp *listSpool) writeAnswer(unitID string, r assign.Result) error {
	if sp.format == formatCSV {
		return sp.outCSV.write(unitID, r)
	}
	b := append(sp.line[:0], `{"unit_id":`...)
	b = appendJSONString(b, unitID)
	// A held-out unit is not enrolled but gets the control's variant (the
	// experience to send it), as in POST /v1/assign.
	if r.Variant != "" {
		b = append(b, `,"variant":`...)
		b = appendJSONString(b, r.Variant)
	} else {
		b = append(b, `,"variant":null`...)
	}
	if r.Enrolled {
		b = append(b, `,"enrolled":true,"reason":`...)
	} else {
		b = append(b, `,"enrolled":false,"reason":`...)
	}
	b = appendJSONString(b, string(r.Reason))
	b = append(b, "}\n"...)
	sp.line = b
	_, err := sp.outW.Write(b)
	return err
}

// finish flushes the spools.
func (sp *listSpool) finish() error {
	if sp.outCSV != nil {
		if err := sp.outCSV.flush(); err != nil {
			return err
		}
	}
	if err := sp.outW.Flush(); err != nil {
		return err
	}
	size, err := sp.out.Seek(0, io.SeekCurrent)
	sp.outSize = size
	if err != nil || sp.expW == nil {
		return err
	}
	return sp.expW.Flush()
}

// spooledExposure is one exposure to record.
type spooledExposure struct {
	unitID, variant string
	// experiment is "" for the list's experiment, or a holdout's analysis
	// key ("holdout:" + key) for a holdout arm.
	experiment string
	attrs      json.RawMessage
}

// writeExposure spools an exposure: four length-prefixed strings. The
// attributes are encoded as the exposure stores them; attributes the
// database cannot store are a bad row (*flywheel.Error).
func (sp *listSpool) writeExposure(unitID, experiment, variant string, attrs map[string]any) error {
	var raw []byte
	if len(attrs) > 0 {
		var err error
		if raw, err = json.Marshal(attrs); err != nil {
			return flywheel.Invalid("attributes", "attributes cannot be encoded: %v", err)
		}
		if len(raw) > maxListAttributes {
			return flywheel.Invalid("attributes", "attributes must be at most %d bytes of JSON to be recorded with an exposure", maxListAttributes)
		}
	}
	b := sp.line[:0]
	for _, s := range [][]byte{[]byte(unitID), []byte(experiment), []byte(variant), raw} {
		b = binaryAppendUvarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	sp.line = b
	_, err := sp.expW.Write(b)
	return err
}

func (sp *listSpool) rewindExposures() error {
	if _, err := sp.exp.Seek(0, io.SeekStart); err != nil {
		return err
	}
	sp.expR = bufio.NewReaderSize(sp.exp, 256<<10)
	return nil
}

// readExposure reads the next spooled exposure; more is false at the end.
func (sp *listSpool) readExposure() (x spooledExposure, more bool, err error) {
	var parts [4][]byte
	for i := range parts {
		n, err := binaryReadUvarint(sp.expR)
		if err == io.EOF && i == 0 {
			return x, false, nil
		}
		if err != nil {
			return x, false, err
		}
		parts[i] = make([]byte, n)
		if _, err := io.ReadFull(sp.expR, parts[i]); err != nil {
			return x, false, err
		}
	}
	x.unitID, x.experiment, x.variant = string(parts[0]), string(parts[1]), string(parts[2])
	if len(parts[3]) > 0 {
		x.attrs = parts[3]
	}
	return x, true, nil
}
