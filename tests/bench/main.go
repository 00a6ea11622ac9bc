// Command bench measures pgforce against the figures it must beat and prints
// one table: metric, value, target, and the Heroku Connect figure it
// replaces. The same figures go to bench/results.json.
//
//	go run ./tests/bench            quick sizes, a few minutes
//	BENCH=full go run ./tests/bench full sizes
//	BENCH_ONLY=capture go run ./tests/bench   only metrics whose function name contains "capture"
//
// For profiling one part: BENCH_INBOUND_LOAD_ONLY=1 runs the inbound load
// without its latency and idle windows, BENCH_OUTBOUND_BULK_ONLY=1 the
// outbound Bulk 2.0 drain alone, BENCH_OUTBOUND_COLLECTIONS_ONLY=1 the
// Collections drain alone, and BENCH_WORKER_LOG_LEVEL sets the
// workers' log level (default warn). BENCH_CPUPROFILE=dir writes to dir,
// for `go tool pprof`, a CPU profile of this process (the simulator) for
// each timed drain, with its allocations (`go tool pprof
// -sample_index=alloc_space -base NAME.allocs-base.pprof NAME.allocs.pprof`),
// and the same of each outbound worker process over its whole life
// (outbound-worker-PID.pprof).
//
// Each metric is a function in the metrics slice; a later issue adds one by
// writing a function that returns its results and appending it there.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"reflect"
	"runtime"
	"runtime/pprof"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/pgforce/pgforce/internal/pgtest"
)

// Result is one measured figure.
type Result struct {
	Metric string  `json:"metric"`
	Value  float64 `json:"value"`
	Unit   string  `json:"unit"`
	// Target is the bound Value must meet: Value >= Min (or <= Max).
	Min *float64 `json:"target_min,omitempty"`
	Max *float64 `json:"target_max,omitempty"`
	// HerokuConnect is the figure of the product we replace, as text
	// because it is often a range or a documented limit.
	HerokuConnect string `json:"heroku_connect"`
	Pass          bool   `json:"pass"`
	Detail        string `json:"detail,omitempty"`
}

func (r Result) target() string {
	switch {
	case r.Min != nil:
		return fmt.Sprintf(">= %s", formatValue(*r.Min))
	case r.Max != nil:
		return fmt.Sprintf("<= %s", formatValue(*r.Max))
	}
	return "-"
}

func (r *Result) check() {
	r.Pass = (r.Min == nil || r.Value >= *r.Min) && (r.Max == nil || r.Value <= *r.Max)
}

// Env is what every metric gets: sizes and a throwaway cluster.
type Env struct {
	Full    bool
	Cluster *pgtest.Cluster
	Log     io.Writer
}

// metricFunc measures one or more related figures.
type metricFunc func(ctx context.Context, env *Env) ([]Result, error)

// metrics run in order; append new ones here.
var metrics = []metricFunc{
	captureOverhead,
	outboundSync,
	captureWhileDraining,
	inboundSync,
}

// Report is the JSON document written to bench/results.json.
type Report struct {
	Mode     string            `json:"mode"`
	Started  time.Time         `json:"started"`
	Duration string            `json:"duration"`
	Server   map[string]string `json:"server"`
	Results  []Result          `json:"results"`
}

func main() {
	if os.Getenv(outboundWorkerEnv) != "" {
		if err := runOutboundWorker(); err != nil {
			fmt.Fprintln(os.Stderr, "bench: outbound worker:", err)
			os.Exit(1)
		}
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, stdout, stderr io.Writer) error {
	full := strings.EqualFold(os.Getenv("BENCH"), "full")
	mode := "quick"
	if full {
		mode = "full"
	}
	started := time.Now()
	cluster, err := pgtest.Start(ctx, pgtest.Options{})
	if err != nil {
		return err
	}
	defer cluster.Stop()

	env := &Env{Full: full, Cluster: cluster, Log: stderr}
	report := Report{Mode: mode, Started: started.UTC(), Server: map[string]string{
		"fsync":              cluster.Setting("fsync"),
		"synchronous_commit": cluster.Setting("synchronous_commit"),
		"shared_buffers":     cluster.Setting("shared_buffers"),
	}}
	fmt.Fprintf(stderr, "bench: %s run on a throwaway Postgres cluster (fsync=%s, synchronous_commit=%s)\n",
		mode, cluster.Setting("fsync"), cluster.Setting("synchronous_commit"))
	failed := 0
	only := strings.ToLower(os.Getenv("BENCH_ONLY"))
	for _, m := range metrics {
		if only != "" && !strings.Contains(strings.ToLower(metricName(m)), only) {
			continue
		}
		results, err := m(ctx, env)
		if err != nil {
			return err
		}
		for i := range results {
			results[i].check()
			if !results[i].Pass {
				failed++
			}
		}
		report.Results = append(report.Results, results...)
	}
	report.Duration = time.Since(started).Round(time.Second).String()

	printTable(stdout, report)
	if err := writeJSON(filepath.Join("bench", "results.json"), report); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "\nwrote bench/results.json (%s run, %s, fsync=%s)\n", mode, report.Duration, cluster.Setting("fsync"))
	if failed > 0 {
		return fmt.Errorf("%d metric(s) missed their target", failed)
	}
	return nil
}

func printTable(w io.Writer, r Report) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "METRIC\tVALUE\tTARGET\tPASS\tHEROKU CONNECT")
	for _, res := range r.Results {
		pass := "yes"
		if !res.Pass {
			pass = "NO"
		}
		fmt.Fprintf(tw, "%s\t%s %s\t%s\t%s\t%s\n", res.Metric, formatValue(res.Value), res.Unit, res.target(), pass, res.HerokuConnect)
	}
	tw.Flush()
	for _, res := range r.Results {
		if res.Detail != "" {
			fmt.Fprintf(w, "  %s: %s\n", res.Metric, res.Detail)
		}
	}
}

func formatValue(v float64) string {
	if v == float64(int64(v)) {
		return fmt.Sprintf("%d", int64(v))
	}
	return fmt.Sprintf("%.3f", v)
}

func writeJSON(path string, report Report) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	b, err := json.MarshalIndent(report, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

func ptr(v float64) *float64 { return &v }

// profileCPU starts a CPU profile named name in $BENCH_CPUPROFILE, if set,
// and returns the function that ends it and says so on log.
func profileCPU(log io.Writer, name string) (stop func(), err error) {
	dir := os.Getenv("BENCH_CPUPROFILE")
	if dir == "" {
		return func() {}, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	path := filepath.Join(dir, name+".pprof")
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	// The allocation profile counts from the start of the process; the
	// one written now is the base to subtract (go tool pprof -base).
	writeAllocs := func(path string) {
		if f, err := os.Create(path); err == nil {
			_ = pprof.Lookup("allocs").WriteTo(f, 0)
			f.Close()
		}
	}
	writeAllocs(filepath.Join(dir, name+".allocs-base.pprof"))
	return func() {
		pprof.StopCPUProfile()
		f.Close()
		writeAllocs(filepath.Join(dir, name+".allocs.pprof"))
		fmt.Fprintf(log, "bench: wrote the CPU profile %s and the allocation profiles beside it\n", path)
	}, nil
}

// metricName is the function name of a metric, e.g. "captureOverhead".
func metricName(m metricFunc) string {
	name := runtime.FuncForPC(reflect.ValueOf(m).Pointer()).Name()
	return name[strings.LastIndex(name, ".")+1:]
}
