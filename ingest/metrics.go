package ingest

import (
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the ingestion counters exported on /metrics.
type metrics struct {
	events     *prometheus.CounterVec // by type and outcome
	overloaded prometheus.Counter
	queued     prometheus.Gauge
	groupSize  prometheus.Histogram
	commit     prometheus.Histogram
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "flywheel_events_total",
			Help: "Events received, by type and outcome (accepted, duplicate, rejected, dropped_opted_out).",
		}, []string{"type", "outcome"}),
		overloaded: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "flywheel_ingest_overloaded_total", Help: "Requests refused because the ingestion queue was full.",
		}),
		queued: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "flywheel_ingest_queued_events", Help: "Events waiting for a writer.",
		}),
		groupSize: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "flywheel_ingest_group_events", Help: "Events per group commit.",
			Buckets: prometheus.ExponentialBuckets(1, 4, 9),
		}),
		commit: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "flywheel_ingest_commit_seconds", Help: "Duration of one group commit.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2.5, 12),
		}),
	}
	if reg != nil {
		reg.MustRegister(m.events, m.overloaded, m.queued, m.groupSize, m.commit)
	}
	return m
}

func (m *metrics) count(eventType, outcome string, n int) {
	if n > 0 {
		m.events.WithLabelValues(eventType, outcome).Add(float64(n))
	}
}
