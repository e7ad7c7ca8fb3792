package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync/atomic"
	"time"
)

const assignUsage = `usage: flywheel assign --experiment KEY --in LIST --out ANSWER [--record-exposures [--sent-at T]]
                      [--url URL] [--key ADMIN_KEY]

Assigns every unit of a list (CSV with a unit_id column, or NDJSON lines
{"unit_id": ..., "attributes": {...}}) to an experiment through a running
flywheel (POST /v1/experiments/KEY/assignments) and writes one line per unit,
in order: CSV when --out ends in .csv, else NDJSON. --record-exposures records
an exposure for every enrolled unit, at --sent-at (RFC 3339; default now);
running it again with the same --sent-at records nothing twice. A progress
bar goes to stderr, a summary per variant to stdout at the end.
--url defaults to FLYWHEEL_URL or http://127.0.0.1:8080, --key to FLYWHEEL_KEY.`

// assignOptions are flywheel assign's flags.
type assignOptions struct {
	experiment, in, out, url, key, sentAt string
	record                                bool
}

// runAssign is flywheel assign.
func runAssign(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("assign", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprintln(stderr, assignUsage) }
	var o assignOptions
	fs.StringVar(&o.experiment, "experiment", "", "the experiment's key")
	fs.StringVar(&o.in, "in", "", "the unit list: a .csv file, or NDJSON (.ndjson, .jsonl); - for stdin (NDJSON unless --in-format csv)")
	inFormat := fs.String("in-format", "", "csv or ndjson (default: from --in's extension)")
	fs.StringVar(&o.out, "out", "", "where the answer goes: .csv for CSV, anything else NDJSON; - for stdout")
	fs.BoolVar(&o.record, "record-exposures", false, "record an exposure for every enrolled unit (exactly once)")
	fs.StringVar(&o.sentAt, "sent-at", "", "with --record-exposures: when the campaign was sent (RFC 3339)")
	fs.StringVar(&o.url, "url", "", "the flywheel server (default FLYWHEEL_URL, else http://127.0.0.1:8080)")
	fs.StringVar(&o.key, "key", "", "an admin API key of that server (default FLYWHEEL_KEY)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return usageError{err.Error()}
	}
	if o.url == "" {
		o.url = getenv("FLYWHEEL_URL")
	}
	if o.url == "" {
		o.url = "http://127.0.0.1:8080"
	}
	if o.key == "" {
		o.key = getenv("FLYWHEEL_KEY")
	}
	switch {
	case fs.NArg() > 0:
		return usageError{fmt.Sprintf("unexpected argument %q\n%s", fs.Arg(0), assignUsage)}
	case o.experiment == "":
		return usageError{"--experiment KEY is required\n" + assignUsage}
	case o.in == "" || o.out == "":
		return usageError{"--in LIST and --out ANSWER are required\n" + assignUsage}
	case o.key == "":
		return usageError{"--key ADMIN_KEY (or FLYWHEEL_KEY) is required: flywheel keys create --scope admin prints one\n" + assignUsage}
	case o.sentAt != "" && !o.record:
		return usageError{"--sent-at goes with --record-exposures\n" + assignUsage}
	}
	if o.sentAt != "" {
		if _, err := time.Parse(time.RFC3339Nano, o.sentAt); err != nil {
			return usageError{fmt.Sprintf("--sent-at %q is not an RFC 3339 time such as 2026-12-04T09:00:00Z", o.sentAt)}
		}
	}
	csvIn := strings.EqualFold(filepath.Ext(o.in), ".csv")
	switch *inFormat {
	case "":
	case "csv":
		csvIn = true
	case "ndjson":
		csvIn = false
	default:
		return usageError{fmt.Sprintf("--in-format must be csv or ndjson, not %q", *inFormat)}
	}
	csvOut := strings.EqualFold(filepath.Ext(o.out), ".csv")

	var in io.Reader = os.Stdin
	var size int64 = -1
	if o.in != "-" {
		f, err := os.Open(o.in)
		if err != nil {
			return err
		}
		defer f.Close()
		if st, err := f.Stat(); err == nil && st.Mode().IsRegular() {
			size = st.Size()
		}
		in = f
	}
	prog := &progress{w: stderr, total: size, start: time.Now()}
	body := &countingReader{r: in, p: prog}

	q := url.Values{}
	if o.record {
		q.Set("record_exposure", "true")
		if o.sentAt != "" {
			q.Set("sent_at", o.sentAt)
		}
	}
	u := strings.TrimRight(o.url, "/") + "/v1/experiments/" + url.PathEscape(o.experiment) + "/assignments"
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, "POST", u, body)
	if err != nil {
		return err
	}
	if size >= 0 {
		req.ContentLength = size
	}
	req.Header.Set("Authorization", "Bearer "+o.key)
	if csvIn {
		req.Header.Set("Content-Type", "text/csv")
	} else {
		req.Header.Set("Content-Type", "application/x-ndjson")
	}
	if csvOut {
		req.Header.Set("Accept", "text/csv")
	} else {
		req.Header.Set("Accept", "application/x-ndjson")
	}
	stop := prog.run()
	res, err := http.DefaultClient.Do(req)
	stop()
	if err != nil {
		return fmt.Errorf("send the list to %s: %w", o.url, err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return serverError(res)
	}
	sum, err := writeAnswer(res, o.out, csvOut, stdout)
	if err != nil {
		return err
	}
	sum.print(summaryWriter(o.out, stdout, stderr), res.Header, o.record, time.Since(prog.start))
	return nil
}

// summaryWriter is where the summary goes: stdout, unless the answer does.
func summaryWriter(out string, stdout, stderr io.Writer) io.Writer {
	if out == "-" {
		return stderr
	}
	return stdout
}

// serverError turns a refusal into an error with the server's message and
// every bad line it lists.
func serverError(res *http.Response) error {
	raw, _ := io.ReadAll(io.LimitReader(res.Body, 1<<20))
	var e struct {
		Error struct {
			Code, Message, Field string
			Details              []struct{ Message string }
		}
	}
	if json.Unmarshal(raw, &e) != nil || e.Error.Message == "" {
		return fmt.Errorf("the server answered %s: %s", res.Status, bytes.TrimSpace(raw))
	}
	var b strings.Builder
	fmt.Fprintf(&b, "the server refused the list (%s, %s): %s", res.Status, e.Error.Code, e.Error.Message)
	for _, d := range e.Error.Details {
		fmt.Fprintf(&b, "\n  %s", d.Message)
	}
	return errors.New(b.String())
}

// writeAnswer copies the answer to out (through a temporary file renamed
// at the end, so that a failed run leaves no half answer) and counts it.
func writeAnswer(res *http.Response, out string, csvOut bool, stdout io.Writer) (*assignSummary, error) {
	var w io.Writer = stdout
	var tmp *os.File
	if out != "-" {
		var err error
		if tmp, err = os.CreateTemp(filepath.Dir(out), "."+filepath.Base(out)+".*.part"); err != nil {
			return nil, err
		}
		defer func() {
			if tmp != nil {
				tmp.Close()
				os.Remove(tmp.Name())
			}
		}()
		w = tmp
	}
	bw := bufio.NewWriterSize(w, 256<<10)
	sum := &assignSummary{variants: map[string]int{}, reasons: map[string]int{}}
	tee := io.TeeReader(res.Body, bw)
	if err := sum.read(tee, csvOut); err != nil {
		return nil, fmt.Errorf("read the answer: %w", err)
	}
	if err := bw.Flush(); err != nil {
		return nil, err
	}
	if tmp != nil {
		if err := tmp.Close(); err != nil {
			return nil, err
		}
		if err := os.Rename(tmp.Name(), out); err != nil {
			return nil, err
		}
		tmp = nil
	}
	return sum, nil
}

// assignSummary counts an answer by variant and, for the units not
// enrolled, by reason.
type assignSummary struct {
	units    int
	variants map[string]int
	reasons  map[string]int // of units not enrolled
}

func (s *assignSummary) add(variant string, enrolled bool, reason string) {
	s.units++
	if enrolled {
		s.variants[variant]++
	} else {
		s.reasons[reason]++
	}
}

func (s *assignSummary) read(r io.Reader, csvOut bool) error {
	if csvOut {
		cr := csv.NewReader(r)
		cr.ReuseRecord = true
		for first := true; ; first = false {
			rec, err := cr.Read()
			if err == io.EOF {
				return nil
			}
			if err != nil {
				return err
			}
			if first || len(rec) != 4 {
				continue // the header
			}
			s.add(rec[1], rec[2] == "true", rec[3])
		}
	}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var l struct {
			Variant  *string
			Enrolled bool
			Reason   string
		}
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			return fmt.Errorf("line %d: %w", s.units+1, err)
		}
		v := ""
		if l.Variant != nil {
			v = *l.Variant
		}
		s.add(v, l.Enrolled, l.Reason)
	}
	return sc.Err()
}

// print writes the summary: units per variant, then not enrolled by reason.
func (s *assignSummary) print(w io.Writer, h http.Header, record bool, took time.Duration) {
	pct := func(n int) float64 {
		if s.units == 0 {
			return 0
		}
		return 100 * float64(n) / float64(s.units)
	}
	fmt.Fprintf(w, "assigned %d units in %.1f s\n", s.units, took.Seconds())
	keys := make([]string, 0, len(s.variants))
	for k := range s.variants {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(w, "  %-24s %10d  %5.1f%%\n", k, s.variants[k], pct(s.variants[k]))
	}
	notEnrolled := 0
	reasons := make([]string, 0, len(s.reasons))
	for r, n := range s.reasons {
		reasons = append(reasons, r)
		notEnrolled += n
	}
	sort.Strings(reasons)
	fmt.Fprintf(w, "  %-24s %10d  %5.1f%%", "(not enrolled)", notEnrolled, pct(notEnrolled))
	if len(reasons) > 0 {
		parts := make([]string, len(reasons))
		for i, r := range reasons {
			parts[i] = fmt.Sprintf("%s %d", r, s.reasons[r])
		}
		fmt.Fprintf(w, "  (%s)", strings.Join(parts, ", "))
	}
	fmt.Fprintln(w)
	if record {
		fmt.Fprintf(w, "exposures: %s recorded, %s already recorded before, %s dropped (opted out)\n",
			orZero(h.Get("X-Flywheel-Exposures-Recorded")), orZero(h.Get("X-Flywheel-Exposures-Duplicates")), orZero(h.Get("X-Flywheel-Exposures-Dropped")))
	}
}

func orZero(s string) string {
	if s == "" {
		return "0"
	}
	return s
}

// progress draws the upload's progress on stderr: percent of the file's
// bytes, rows (lines) sent and rows per second.
type progress struct {
	w            io.Writer
	total        int64 // bytes; -1 when unknown
	bytes, lines atomic.Int64
	start        time.Time
}

type countingReader struct {
	r io.Reader
	p *progress
}

func (c *countingReader) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	c.p.bytes.Add(int64(n))
	c.p.lines.Add(int64(bytes.Count(b[:n], []byte{'\n'})))
	return n, err
}

// run draws the bar every 200 ms until the returned stop is called, which
// draws it a last time and ends the line.
func (p *progress) run() (stop func()) {
	done, finished := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-done:
				p.draw(true)
				return
			case <-t.C:
				p.draw(false)
			}
		}
	}()
	return func() { close(done); <-finished }
}

func (p *progress) draw(last bool) {
	b, l := p.bytes.Load(), p.lines.Load()
	secs := time.Since(p.start).Seconds()
	rate := 0.0
	if secs > 0 {
		rate = float64(l) / secs
	}
	const width = 30
	bar, pct := strings.Repeat("?", width), "  ?%"
	if p.total > 0 {
		f := min(float64(b)/float64(p.total), 1)
		n := int(f * width)
		bar, pct = strings.Repeat("=", n)+strings.Repeat(" ", width-n), fmt.Sprintf("%3.0f%%", 100*f)
	}
	state := "sending"
	if last {
		state = "sent"
	} else if p.total > 0 && b >= p.total {
		state = "assigning" // all sent: the server checks, assigns, records
	}
	fmt.Fprintf(p.w, "\r[%s] %s %d rows %.0f rows/s %.1f s %s  ", bar, pct, l, rate, secs, state)
	if last {
		fmt.Fprintln(p.w)
	}
}
