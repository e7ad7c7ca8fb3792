package main

import (
	"fmt"
	"io"
	"os"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/flywheel-oss/flywheel/internal/loadgen"
)

// benchReport is the whole result; --json prints it as is.
type benchReport struct {
	Command  string        `json:"command"`
	Date     string        `json:"date"`
	Machine  benchMachine  `json:"machine"`
	Options  benchOptions  `json:"options"`
	Database string        `json:"database"`
	LogLevel string        `json:"flywheel_log_level"`
	Request  benchRequest  `json:"request"`
	Response benchResponse `json:"response"`
	Runs     []benchRun    `json:"runs"`
	Summary  benchSummary  `json:"summary"`
}

type benchMachine struct {
	CPUs       int    `json:"cpus"`
	CPUModel   string `json:"cpu_model"`
	GOMAXPROCS int    `json:"gomaxprocs"`
	Go         string `json:"go"`
	OS         string `json:"os"`
}

// benchRun is one run of one target; latencies in milliseconds.
type benchRun struct {
	Round      int     `json:"round"`
	Target     string  `json:"target"`
	Requests   int64   `json:"requests"`
	Errors     int64   `json:"errors"`
	Non2xx     int64   `json:"non_2xx"`
	FirstError string  `json:"first_error,omitempty"`
	RPS        float64 `json:"requests_per_second"`
	MeanMs     float64 `json:"mean_ms"`
	P50Ms      float64 `json:"p50_ms"`
	P90Ms      float64 `json:"p90_ms"`
	P99Ms      float64 `json:"p99_ms"`
	P999Ms     float64 `json:"p999_ms"`
	MaxMs      float64 `json:"max_ms"`
}

// benchSummary holds the medians over rounds and the verdict. The ratios
// are of the medians: flywheel/bare.
type benchSummary struct {
	BareRPS       float64 `json:"bare_requests_per_second"`
	FlywheelRPS   float64 `json:"flywheel_requests_per_second"`
	RPSRatio      float64 `json:"rps_ratio"`
	RPSTarget     float64 `json:"rps_ratio_target_min"`
	RPSPass       bool    `json:"rps_pass"`
	BareP99Ms     float64 `json:"bare_p99_ms"`
	FlywheelP99Ms float64 `json:"flywheel_p99_ms"`
	P99Ratio      float64 `json:"p99_ratio"`
	P99Target     float64 `json:"p99_ratio_target_max"`
	P99Pass       bool    `json:"p99_pass"`
	Failures      int64   `json:"failed_requests"` // errors and non-2xx, both targets
	Pass          bool    `json:"pass"`
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func newBenchRun(round int, target string, r loadgen.Result) benchRun {
	h := r.Latency
	return benchRun{
		Round: round, Target: target, Requests: r.Requests, Errors: r.Errors, Non2xx: r.Non2xx,
		FirstError: r.FirstError, RPS: r.RPS(), MeanMs: ms(h.Mean()),
		P50Ms: ms(h.Quantile(0.50)), P90Ms: ms(h.Quantile(0.90)), P99Ms: ms(h.Quantile(0.99)),
		P999Ms: ms(h.Quantile(0.999)), MaxMs: ms(h.Max()),
	}
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Sorted(slices.Values(xs))
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func (r *benchReport) summarize() {
	var rps, p99 = map[string][]float64{}, map[string][]float64{}
	s := benchSummary{RPSTarget: benchRPSTarget, P99Target: benchP99Target}
	for _, run := range r.Runs {
		rps[run.Target] = append(rps[run.Target], run.RPS)
		p99[run.Target] = append(p99[run.Target], run.P99Ms)
		s.Failures += run.Errors + run.Non2xx
	}
	s.BareRPS, s.FlywheelRPS = median(rps["bare"]), median(rps["flywheel"])
	s.BareP99Ms, s.FlywheelP99Ms = median(p99["bare"]), median(p99["flywheel"])
	if s.BareRPS > 0 {
		s.RPSRatio = s.FlywheelRPS / s.BareRPS
	}
	if s.BareP99Ms > 0 {
		s.P99Ratio = s.FlywheelP99Ms / s.BareP99Ms
	}
	s.RPSPass = s.RPSRatio >= benchRPSTarget
	s.P99Pass = s.P99Ratio > 0 && s.P99Ratio <= benchP99Target
	s.Pass = s.RPSPass && s.P99Pass && s.Failures == 0
	r.Summary = s
}

func (r *benchReport) printHeader(w io.Writer) {
	m, o := r.Machine, r.Options
	fmt.Fprintf(w, "flywheel bench assign: POST /v1/assign vs a bare gin JSON handler, over loopback, in one process\n")
	fmt.Fprintf(w, "machine:  %d CPUs (%s), GOMAXPROCS %d, %s %s\n", m.CPUs, m.CPUModel, m.GOMAXPROCS, m.Go, m.OS)
	fmt.Fprintf(w, "load:     %d connections, closed loop, %v warm-up + %v measured per run, %d rounds of bare then flywheel\n",
		o.Connections, o.Warmup, o.Duration, o.Rounds)
	fmt.Fprintf(w, "flywheel: %d running experiments, each request asks for %s (targeting %s), log level %s\n",
		o.Experiments, r.Request.Experiment, r.Request.Targeting, r.LogLevel)
	fmt.Fprintf(w, "sizes:    request ~%d bytes; response %d bytes (flywheel), %d bytes (bare)\n",
		r.Request.Bytes, r.Response.FlywheelBytes, r.Response.BareBytes)
	fmt.Fprintf(w, "database: %s\n\n", r.Database)
	fmt.Fprintf(w, "%5s  %-8s  %9s  %9s  %8s  %8s  %8s  %8s  %8s  %6s  %s\n",
		"round", "target", "requests", "req/s", "p50", "p90", "p99", "p99.9", "max", "failed", "flywheel/bare")
}

func (r *benchReport) printRun(w io.Writer, run benchRun) {
	vs := ""
	if run.Target == "flywheel" {
		for _, b := range r.Runs {
			if b.Round == run.Round && b.Target == "bare" && b.RPS > 0 && b.P99Ms > 0 {
				vs = fmt.Sprintf("req/s %.2f, p99 %.2fx", run.RPS/b.RPS, run.P99Ms/b.P99Ms)
			}
		}
	}
	fmt.Fprintf(w, "%5d  %-8s  %9d  %9.0f  %6.2fms  %6.2fms  %6.2fms  %6.2fms  %6.2fms  %6d  %s\n",
		run.Round, run.Target, run.Requests, run.RPS, run.P50Ms, run.P90Ms, run.P99Ms, run.P999Ms, run.MaxMs,
		run.Errors+run.Non2xx, vs)
	if run.FirstError != "" {
		fmt.Fprintf(w, "       first failure: %s\n", run.FirstError)
	}
}

func (r *benchReport) printSummary(w io.Writer) {
	s := r.Summary
	verdict := func(ok bool) string {
		if ok {
			return "PASS"
		}
		return "FAIL"
	}
	fmt.Fprintf(w, "\nsummary, medians over %d rounds:\n", r.Options.Rounds)
	fmt.Fprintf(w, "  requests/s  bare %9.0f  flywheel %9.0f  ratio %.2f   (target >= %.2f)   %s\n",
		s.BareRPS, s.FlywheelRPS, s.RPSRatio, s.RPSTarget, verdict(s.RPSPass))
	fmt.Fprintf(w, "  p99         bare %7.2fms  flywheel %7.2fms  ratio %.2fx  (target <= %.2fx)  %s\n",
		s.BareP99Ms, s.FlywheelP99Ms, s.P99Ratio, s.P99Target, verdict(s.P99Pass))
	if s.Failures > 0 {
		fmt.Fprintf(w, "  failed requests: %d (a run with failures does not count)\n", s.Failures)
	}
	fmt.Fprintf(w, "result: %s\n", verdict(s.Pass))
}

func currentMachine() benchMachine {
	m := benchMachine{CPUs: runtime.NumCPU(), CPUModel: "unknown", GOMAXPROCS: runtime.GOMAXPROCS(0),
		Go: runtime.Version(), OS: runtime.GOOS + "/" + runtime.GOARCH}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.Lines(string(b)) {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPUModel = strings.TrimSpace(v)
				break
			}
		}
	}
	return m
}
