// Package budget keeps the worker's Salesforce API use under the share of
// the org's daily allocation that pgforce.org.api_budget_pct allows.
//
// Salesforce reports the org's usage on every answer (Sforce-Limit-Info:
// api-usage=used/max); the client remembers the latest figures and Budget
// reads them before spending calls. Work is ranked so that when the budget
// runs low the least urgent work stops first: loads stop at 80% of the
// budget, polling at 90%, and writes (outbound changes users are waiting
// for) only at 100%. When Salesforce refuses a call with
// REQUEST_LIMIT_EXCEEDED, every kind of work backs off for a while.
package budget

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/pgforce/pgforce/worker/salesforce"
)

// Priority ranks API work; lower values are more urgent.
type Priority int

const (
	// Write is outbound sync: users' changes waiting to reach Salesforce.
	Write Priority = iota
	// Poll is incremental inbound reads (polling, re-reads after gaps).
	Poll
	// Load is initial loads, reloads and resyncs, which can wait.
	Load
)

func (p Priority) String() string {
	switch p {
	case Write:
		return "write"
	case Poll:
		return "poll"
	case Load:
		return "load"
	}
	return fmt.Sprintf("priority(%d)", int(p))
}

// share is the fraction of the budget each priority may use up to.
var share = map[Priority]float64{Write: 1.0, Poll: 0.9, Load: 0.8}

// Usage reports API calls used in the rolling 24 hours and the org's
// allocation; *salesforce.Client's APIUsage fits. Zero max means unknown.
type Usage func() (used, max int)

// Budget decides whether API work may run now. It is safe for concurrent use.
type Budget struct {
	usage Usage
	now   func() time.Time

	mu           sync.Mutex
	pct          int
	blockedUntil time.Time
	backoff      time.Duration
	lastRefusal  time.Time
	minBackoff   time.Duration
	recheck      time.Duration
	probe        func(context.Context) error
}

// New returns a budget reading usage, allowing pct percent (1-100) of the
// allocation until SetPercent says otherwise.
func New(usage Usage, pct int) *Budget {
	b := &Budget{usage: usage, now: time.Now, minBackoff: 30 * time.Second, recheck: time.Minute}
	b.SetPercent(pct)
	return b
}

// SetPercent changes the share of the allocation pgforce may use
// (pgforce.org.api_budget_pct).
func (b *Budget) SetPercent(pct int) {
	if pct < 1 {
		pct = 1
	}
	if pct > 100 {
		pct = 100
	}
	b.mu.Lock()
	b.pct = pct
	b.mu.Unlock()
}

// Check returns nil when work of priority p may call Salesforce now, or an
// *Exhausted error saying why not and until when to wait.
func (b *Budget) Check(p Priority) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := b.now()
	if now.Before(b.blockedUntil) {
		return &Exhausted{Priority: p, Until: b.blockedUntil, Reason: "Salesforce answered REQUEST_LIMIT_EXCEEDED; backing off", Refused: true}
	}
	used, max := b.usage()
	if max <= 0 {
		return nil
	}
	limit := float64(max) * float64(b.pct) / 100 * share[p]
	if float64(used) < limit {
		return nil
	}
	return &Exhausted{
		Priority: p,
		// The allocation is a rolling 24 hours; usage drops as old calls
		// age out, so look again in a while.
		Until:  now.Add(b.recheck),
		Reason: fmt.Sprintf("API budget: %d of %d daily calls used, pgforce may use %d%% and %s work stops at %.0f", used, max, b.pct, p, limit),
	}
}

// SetProbe sets a cheap call (e.g. the limits resource) that Wait makes
// after waiting for usage to drop, because the usage figures only change
// when an answer carries Sforce-Limit-Info, and a waiting worker makes none.
// recheck is how long to wait between probes (default 1 min).
func (b *Budget) SetProbe(probe func(context.Context) error, recheck time.Duration) {
	b.mu.Lock()
	b.probe = probe
	if recheck > 0 {
		b.recheck = recheck
	}
	b.mu.Unlock()
}

// Wait blocks until work of priority p may run or ctx ends.
func (b *Budget) Wait(ctx context.Context, p Priority) error {
	for waited := false; ; waited = true {
		if waited {
			b.mu.Lock()
			probe := b.probe
			blocked := b.now().Before(b.blockedUntil)
			b.mu.Unlock()
			if probe != nil && !blocked {
				b.Observe(probe(ctx))
			}
		}
		err := b.Check(p)
		if err == nil {
			return nil
		}
		ex := err.(*Exhausted)
		d := time.Until(ex.Until)
		if d < 10*time.Millisecond {
			d = 10 * time.Millisecond
		}
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}

// Observe inspects the outcome of a call: REQUEST_LIMIT_EXCEEDED blocks all
// work for a backoff that doubles on each refusal (from 30 s up to 15 min) and
// resets after a quiet hour. It reports whether err was such a refusal.
func (b *Budget) Observe(err error) bool {
	if err == nil || !salesforce.IsLimitExceeded(err) {
		return false
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	now := b.now()
	if b.backoff == 0 || now.Sub(b.lastRefusal) > time.Hour {
		b.backoff = b.minBackoff
	} else if now.Before(b.blockedUntil.Add(b.backoff)) {
		b.backoff = min(b.backoff*2, 15*time.Minute)
	}
	b.lastRefusal = now
	b.blockedUntil = now.Add(b.backoff)
	return true
}

// SetMinBackoff sets the first backoff after REQUEST_LIMIT_EXCEEDED
// (default 30 s); tests shorten it.
func (b *Budget) SetMinBackoff(d time.Duration) {
	b.mu.Lock()
	b.minBackoff = d
	b.mu.Unlock()
}

// Exhausted says that work of a priority must wait.
type Exhausted struct {
	Priority Priority
	Until    time.Time
	Reason   string
	// Refused says that Salesforce refused a call (REQUEST_LIMIT_EXCEEDED):
	// the org's allocation is spent, which api_budget_pct cannot change.
	Refused bool
}

func (e *Exhausted) Error() string {
	return fmt.Sprintf("%s deferred until %s: %s", e.Priority, e.Until.UTC().Format(time.RFC3339), e.Reason)
}
