package sdk

import "sync/atomic"

// Stats counts what the client did since New. Every event recorded ends up
// in exactly one of Sent, Rejected, Dropped or Pending:
//
//	Queued = Sent + Rejected + Dropped + Pending
type Stats struct {
	// Queued counts the events recorded: exposures, Track and Identify.
	Queued uint64
	// Exposures counts, of Queued, the exposures Assign logged.
	Exposures uint64
	// Sent counts the events the server acknowledged: stored, duplicates
	// of events it already had, and events it discarded for a unit that
	// opted out on the server.
	Sent uint64
	// Duplicates counts, of Sent, the events the server already had (a
	// retry of a request whose answer was lost).
	Duplicates uint64
	// ServerDropped counts, of Sent, the events the server discarded
	// because their unit opted out there.
	ServerDropped uint64
	// Rejected counts the events the server rejected as invalid (one by
	// one, in a 200 answer). They are logged and never retried.
	Rejected uint64
	// Retried counts events sent again after a failed attempt (network
	// error, 429 or 5xx), once per attempt.
	Retried uint64
	// Dropped counts the events given up: pushed out of the full buffer
	// (Overflowed), refused with the whole request (e.g. a 401 or 413),
	// still unsent when Close gave up, or recorded by an offline client.
	Dropped uint64
	// Overflowed counts, of Dropped, the oldest events pushed out of the
	// full buffer.
	Overflowed uint64
	// Pending is the number of events waiting or in flight now.
	Pending int

	// CacheEvictions counts exposure cache entries evicted to make room;
	// each makes one more exposure possible for its (experiment, unit).
	CacheEvictions uint64
	// CacheSize is the exposure cache's capacity, in entries.
	CacheSize int
	// StickyUnits is the number of (bandit experiment, unit) pairs whose
	// first arm the client remembers; StickyFull counts the first
	// assignments not remembered because that memory was full
	// (WithStickyUnits).
	StickyUnits int
	StickyFull  uint64

	// ConfigRevision is the revision of the config the client assigns from
	// (0 without one).
	ConfigRevision int64
	// ConfigFromServer reports whether that config came from the server
	// (rather than from the bootstrap).
	ConfigFromServer bool
	// ConfigUpdates counts new configs loaded from the server.
	ConfigUpdates uint64
	// ConfigErrors counts failed config fetches (including configs that did
	// not compile; the last good one was kept).
	ConfigErrors uint64
	// ConfigStale counts configs the server sent at an older revision than
	// the one in use, which the client refused.
	ConfigStale uint64
	// Streaming reports whether the config stream is open now.
	Streaming bool
	// StreamConnects counts config streams the server accepted.
	StreamConnects uint64
}

// counters are the atomic counters behind Stats. The events a client with
// a queue records, and those its full buffer pushes out, are counted by the
// queue, under the lock the push takes anyway (queue.counts): queued and
// dropped here count the rest.
type counters struct {
	queued, exposures, sent, duplicates, serverDropped atomic.Uint64
	rejected, retried, dropped                         atomic.Uint64
	configUpdates, configErrors, configStale           atomic.Uint64
	streamConnects                                     atomic.Uint64
}

// Stats returns the client's counters. Counters are read one by one, so a
// snapshot taken while events flow may be off by the events in motion.
func (c *Client) Stats() Stats {
	s := Stats{
		Queued:         c.stats.queued.Load(),
		Exposures:      c.stats.exposures.Load(),
		Sent:           c.stats.sent.Load(),
		Duplicates:     c.stats.duplicates.Load(),
		ServerDropped:  c.stats.serverDropped.Load(),
		Rejected:       c.stats.rejected.Load(),
		Retried:        c.stats.retried.Load(),
		Dropped:        c.stats.dropped.Load(),
		CacheEvictions: c.seen.evictions.Load(),
		CacheSize:      c.seen.capacity(),
		StickyUnits:    c.sticky.size(),
		StickyFull:     c.sticky.full.Load(),
		ConfigUpdates:  c.stats.configUpdates.Load(),
		ConfigErrors:   c.stats.configErrors.Load(),
		ConfigStale:    c.stats.configStale.Load(),
		Streaming:      c.streaming.Load(),
		StreamConnects: c.stats.streamConnects.Load(),
	}
	if c.queue != nil {
		pushed, overflowed, pending := c.queue.counts()
		s.Queued += pushed
		s.Dropped += overflowed
		s.Overflowed = overflowed
		s.Pending = pending
	}
	if cfg := c.config.Load(); cfg != nil {
		s.ConfigRevision, s.ConfigFromServer = cfg.revision, cfg.fromServer
	}
	return s
}
