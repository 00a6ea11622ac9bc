package demo

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// statusRow is one row of pgforce.status.
type statusRow struct {
	id                        int
	org, sobject, mode, state string
	detail                    string
	failure                   string // the worker retries a failing sync (pgforce.status.failure)
	rows, backlog, openErrors int64
	oldestPending             *time.Duration
	lastIn, lastOut           *time.Time
}

// view draws the load progress and the live status, redrawing in place on
// a terminal and printing plain lines otherwise.
type view struct {
	d     *run
	conn  *pgx.Conn
	drawn int // lines of the block last drawn in place
}

func newView(d *run, conn *pgx.Conn) *view { return &view{d: d, conn: conn} }

func (v *view) status(ctx context.Context) ([]statusRow, error) {
	rows, err := v.conn.Query(ctx, `SELECT mapping_id, org, sobject, mode, state, coalesce(state_detail, ''), coalesce(failure, ''),
		coalesce(row_count, 0), outbound_backlog, open_errors, oldest_pending_age, last_inbound_at, last_outbound_at
		FROM pgforce.status ORDER BY mapping_id`)
	if err != nil {
		return nil, fmt.Errorf("read pgforce.status: %w", err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (statusRow, error) {
		var s statusRow
		err := r.Scan(&s.id, &s.org, &s.sobject, &s.mode, &s.state, &s.detail, &s.failure, &s.rows, &s.backlog, &s.openErrors, &s.oldestPending, &s.lastIn, &s.lastOut)
		return s, err
	})
}

// draw shows a block of lines: in place on a terminal, appended otherwise.
func (v *view) draw(lines []string) {
	var b strings.Builder
	if v.d.cfg.Redraw && v.drawn > 0 {
		fmt.Fprintf(&b, "\033[%dF\033[J", v.drawn)
	}
	for _, l := range lines {
		b.WriteString(l)
		b.WriteByte('\n')
	}
	fmt.Fprint(v.d.out, b.String())
	if v.d.cfg.Redraw {
		v.drawn = len(lines)
	}
}

type loadResult struct {
	rows int64
	took time.Duration
}

// progress tracks one mapping's initial load.
type progress struct {
	started, finished time.Time
	rows              int64
}

// load shows a progress bar per mapping until every mapping has finished
// its initial load (state synced) or failed (state error).
func (v *view) load(ctx context.Context) (loadResult, error) {
	fmt.Fprintln(v.d.out, "Initial load (rows in the Postgres table vs. the simulator's count):")
	began := time.Now()
	prog := map[string]*progress{}
	tick := time.NewTicker(v.d.cfg.Refresh)
	defer tick.Stop()
	lastPlain := time.Time{}
	for {
		st, err := v.status(ctx)
		if err != nil {
			return loadResult{}, err
		}
		now := time.Now()
		done := len(st) > 0
		var total int64
		lines := make([]string, 0, len(st))
		for _, s := range st {
			p := prog[s.sobject]
			if p == nil {
				p = &progress{}
				prog[s.sobject] = p
			}
			if p.started.IsZero() && (s.state == "loading" || s.rows > 0) {
				p.started = now
			}
			p.rows = s.rows
			finished := s.state == "synced" || s.state == "error"
			if finished && p.finished.IsZero() {
				p.finished = now
				if p.started.IsZero() {
					p.started = began
				}
			}
			done = done && finished
			total += s.rows
			lines = append(lines, v.progressLine(s, p, now))
		}
		plain := !v.d.cfg.Redraw
		if !plain || done || now.Sub(lastPlain) >= time.Second {
			if plain {
				for i := range lines {
					lines[i] = fmt.Sprintf("[%5.1fs] load %s", time.Since(v.d.start).Seconds(), strings.TrimSpace(lines[i]))
				}
			}
			v.draw(lines)
			lastPlain = now
		}
		if done {
			v.drawn = 0
			for _, s := range st {
				if s.state == "error" {
					fmt.Fprintf(v.d.out, "  %s mapping failed: %s\n", s.sobject, s.detail)
				}
			}
			return loadResult{rows: total, took: time.Since(began)}, nil
		}
		if err := v.d.workerExited(); err != nil {
			return loadResult{}, err
		}
		select {
		case <-ctx.Done():
			return loadResult{}, ctx.Err()
		case <-tick.C:
		}
	}
}

func (v *view) progressLine(s statusRow, p *progress, now time.Time) string {
	want := int64(v.d.org.Counts[s.sobject])
	frac := 1.0
	if want > 0 {
		frac = min(float64(s.rows)/float64(want), 1)
	}
	const width = 30
	filled := int(frac * width)
	bar := strings.Repeat("#", filled) + strings.Repeat(".", width-filled)
	rate := "      - rows/s"
	if !p.started.IsZero() {
		end := now
		if !p.finished.IsZero() {
			end = p.finished
		}
		if el := end.Sub(p.started).Seconds(); el > 0.05 && s.rows > 0 {
			rate = fmt.Sprintf("%8s rows/s", thousands(int64(float64(s.rows)/el)))
		}
	}
	return fmt.Sprintf("  %-12s [%s] %7s / %-7s %3.0f%% %s  %s", s.sobject, bar,
		thousands(s.rows), thousands(want), frac*100, rate, s.state)
}

// live refreshes pgforce.status until ctx ends or cfg.For has passed.
func (v *view) live(ctx context.Context) error {
	var end <-chan time.Time
	if v.d.cfg.For > 0 {
		t := time.NewTimer(v.d.cfg.For)
		defer t.Stop()
		end = t.C
	}
	stop := "Ctrl-C stops everything and removes the temporary data"
	if v.d.cfg.Only != "" {
		stop = "Ctrl-C stops this view"
	}
	if v.d.cfg.Redraw {
		fmt.Fprintf(v.d.out, "\nLive status from pgforce.status (%s):\n", stop)
	} else {
		fmt.Fprintf(v.d.out, "\nLive status from pgforce.status, printed when it changes (%s):\n", stop)
	}
	tick := time.NewTicker(v.d.cfg.Refresh)
	defer tick.Stop()
	last := map[int]string{} // by mapping: two orgs may map one object
	for {
		st, err := v.status(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		if v.d.cfg.Redraw {
			v.draw(v.liveBlock(st))
		} else {
			for _, s := range st {
				line := plainStatus(s)
				if last[s.id] != line {
					last[s.id] = line
					fmt.Fprintf(v.d.out, "[%5.1fs] status %s\n", time.Since(v.d.start).Seconds(), line)
				}
			}
		}
		if err := v.d.workerExited(); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return nil
		case <-end:
			fmt.Fprintf(v.d.out, "[%5.1fs] demo time (--for %s) is up; stopping\n", time.Since(v.d.start).Seconds(), v.d.cfg.For)
			return nil
		case <-tick.C:
		}
	}
}

func (v *view) liveBlock(st []statusRow) []string {
	now := time.Now()
	lines := []string{fmt.Sprintf("  %-12s %-10s %-8s %8s %8s %8s %7s  %-10s %-10s",
		"sobject", "mode", "state", "rows", "backlog", "oldest", "errors", "last in", "last out")}
	for _, s := range st {
		oldest := "-"
		if s.oldestPending != nil {
			oldest = fmt.Sprintf("%.1fs", s.oldestPending.Seconds())
		}
		lines = append(lines, fmt.Sprintf("  %-12s %-10s %-8s %8s %8s %8s %7s  %-10s %-10s",
			s.name(), s.mode, s.state, thousands(s.rows), thousands(s.backlog), oldest, thousands(s.openErrors),
			ago(now, s.lastIn), ago(now, s.lastOut)))
		if s.state == "error" && s.detail != "" {
			lines = append(lines, "    "+s.detail)
		}
		if s.failure != "" {
			lines = append(lines, "    retrying: "+s.failure)
		}
	}
	if v.d.worker != nil {
		rss, peak := v.d.workerMemory()
		lines = append(lines, fmt.Sprintf("  worker pid %d: RSS %.1f MB (peak %.1f MB)   %s", v.d.worker.Process.Pid,
			float64(rss)/(1<<20), float64(peak)/(1<<20), now.Format("15:04:05")))
	} else {
		lines = append(lines, "  "+now.Format("15:04:05"))
	}
	return lines
}

// name is the mapping's object, with its org unless that is the default
// one (the demo's worker serves that org only).
func (s statusRow) name() string {
	if s.org == "default" {
		return s.sobject
	}
	return s.sobject + "@" + s.org
}

func plainStatus(s statusRow) string {
	stamp := func(t *time.Time) string {
		if t == nil {
			return "-"
		}
		return t.Local().Format("15:04:05.000")
	}
	line := fmt.Sprintf("%s %s %s rows=%d backlog=%d errors=%d last_in=%s last_out=%s",
		s.name(), s.mode, s.state, s.rows, s.backlog, s.openErrors, stamp(s.lastIn), stamp(s.lastOut))
	if s.state == "error" && s.detail != "" {
		line += " detail=" + fmt.Sprintf("%q", s.detail)
	}
	if s.failure != "" {
		line += " retrying=" + fmt.Sprintf("%q", s.failure)
	}
	return line
}

func ago(now time.Time, t *time.Time) string {
	if t == nil {
		return "-"
	}
	d := now.Sub(*t)
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%.0fs ago", max(d.Seconds(), 0))
	case d < time.Hour:
		return fmt.Sprintf("%.0fm ago", d.Minutes())
	default:
		return t.Local().Format("15:04:05")
	}
}
