package inbound

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	rowsApplied prometheus.Counter
	events      *prometheus.CounterVec
	rereads     prometheus.Counter
	loads       *prometheus.CounterVec
	cdcLag      prometheus.Histogram
	running     prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		rowsApplied: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pgforce_inbound_rows_applied_total", Help: "Records read from Salesforce (loads, resyncs, polls) and merged into Postgres.",
		}),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pgforce_inbound_cdc_events_total", Help: "Change events applied, by change type.",
		}, []string{"change_type"}),
		rereads: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pgforce_inbound_rereads_total", Help: "Records read again by id after gap, undelete or partial events.",
		}),
		loads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pgforce_inbound_reads_total", Help: "Full or incremental reads started, by API.",
		}, []string{"api"}),
		cdcLag: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "pgforce_inbound_cdc_lag_seconds", Help: "From the Salesforce commit of a change to its commit in Postgres.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}),
		running: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "pgforce_inbound_mappings_running", Help: "Mappings whose inbound sync this worker runs.",
		}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.rowsApplied, m.events, m.rereads, m.loads, m.cdcLag, m.running} {
			_ = reg.Register(c)
		}
	}
	return m
}

func (m *metrics) loadAPI(bulk bool) {
	if bulk {
		m.loads.WithLabelValues("bulk").Inc()
	} else {
		m.loads.WithLabelValues("rest").Inc()
	}
}
