package outbound

import "github.com/prometheus/client_golang/prometheus"

// metrics are the outbound side's Prometheus series: what the changes sent
// came to, and through which API. The backlog and its age are in
// pgforce.status, which every worker shares.
type metrics struct {
	records *prometheus.CounterVec
	batches *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		records: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pgforce_outbound_records_total",
			Help: "Changes the worker settled or sent again, by operation and result: written to Salesforce, refused (a pgforce.error row: by Salesforce, or before it was sent), or retried (sent, and failed for a passing reason).",
		}, []string{"op", "result"}),
		batches: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pgforce_outbound_batches_total", Help: "Batches of changes sent, by API (collections or bulk).",
		}, []string{"api"}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.records, m.batches} {
			_ = reg.Register(c)
		}
	}
	return m
}

// outcomes counts a batch's results.
func (m *metrics) outcomes(changes []*change, results []outcome) {
	for i, c := range changes {
		var result string
		switch results[i].kind {
		case outOK:
			result = "written"
		case outFailed:
			result = "refused"
		case outTransient:
			if results[i].unsent {
				continue // never reached Salesforce (a budget hold, a refused login)
			}
			result = "retried"
		default:
			continue // nothing sent, or held for later
		}
		m.records.WithLabelValues(c.Op, result).Inc()
	}
}

func (m *metrics) batch(bulk bool) {
	if bulk {
		m.batches.WithLabelValues("bulk").Inc()
	} else {
		m.batches.WithLabelValues("collections").Inc()
	}
}
