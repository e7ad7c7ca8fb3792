package sdk

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"sync/atomic"

	"github.com/flywheel-oss/flywheel/assign"
)

// maxOptOutPages bounds one refresh of the opt-out set (50,000 changes a
// page at most): a server that keeps answering "more" cannot hold the
// poller forever.
const maxOptOutPages = 2000

// optOuts is the client's copy of the server's opt-outs (PUT
// /v1/units/{unit_type}/{unit_id}/consent): a set of assign.OptOutToken
// values, never ids, read from GET /v1/sdk/opt-outs page by page and then
// polled from the last cursor with the config. The set is immutable once
// published; a change publishes a new one.
type optOuts struct {
	set    atomic.Pointer[map[uint64]struct{}]
	cursor string // guarded by Client.fetchMu
	// unsupported: the server has no opt-out feed (404, an older server);
	// asked again only after a restart of the client.
	unsupported bool
	failures    int // consecutive failed refreshes, guarded by Client.fetchMu
}

// refreshOptOuts brings the opt-out set up to date after a config fetch. A
// failure keeps the set it had (logged once per run of failures): the
// server still drops the events of opted-out units on arrival.
func (c *Client) refreshOptOuts(ctx context.Context) {
	err := c.fetchOptOuts(ctx)
	o := &c.optOuts
	switch {
	case err == nil:
		if o.failures > 0 {
			c.log.Info("flywheel: opt-out fetch recovered", "failures", o.failures)
		}
		o.failures = 0
	case ctx.Err() != nil:
	default:
		o.failures++
		if o.failures == 1 {
			c.log.Warn("flywheel: opt-out fetch failed; keeping the opt-outs known so far", "err", err)
		}
	}
}

// has reports whether the server says the unit opted out. It hashes the id
// only when some unit has.
func (o *optOuts) has(unitType, id string) bool {
	s := o.set.Load()
	if s == nil || len(*s) == 0 {
		return false
	}
	_, ok := (*s)[assign.OptOutToken(unitType, id)]
	return ok
}

// optOutPage is one answer of GET /v1/sdk/opt-outs.
type optOutPage struct {
	OptedOut []string `json:"opted_out"`
	OptedIn  []string `json:"opted_in"`
	Cursor   string   `json:"cursor"`
	More     bool     `json:"more"`
}

// fetchOptOuts reads the opt-out changes since the last cursor and
// publishes the new set. c.fetchMu is held.
func (c *Client) fetchOptOuts(ctx context.Context) error {
	o := &c.optOuts
	if o.unsupported {
		return nil
	}
	var next map[uint64]struct{} // the new set, copied at the first change
	cursor := o.cursor
	for page := 0; ; page++ {
		if page == maxOptOutPages {
			return fmt.Errorf("sdk: fetch opt-outs: more than %d pages", maxOptOutPages)
		}
		p, err := c.fetchOptOutPage(ctx, cursor)
		if err != nil {
			return err
		}
		if p == nil { // 404: the server has no opt-out feed
			o.unsupported = true
			c.log.Warn("flywheel: the server has no opt-out feed (GET /v1/sdk/opt-outs); units opted out on the server are not known locally")
			return nil
		}
		// A page holds each token once, so its opt-outs and opt-ins commute;
		// pages apply in order, a later one being newer.
		for _, list := range []struct {
			hex      []string
			optedOut bool
		}{{p.OptedOut, true}, {p.OptedIn, false}} {
			for _, h := range list.hex {
				t, err := strconv.ParseUint(h, 16, 64)
				if err != nil || len(h) != 16 {
					return fmt.Errorf("sdk: fetch opt-outs: bad token %q", h)
				}
				if next == nil {
					next = o.copySet()
				}
				if list.optedOut {
					next[t] = struct{}{}
				} else {
					delete(next, t)
				}
			}
		}
		cursor = p.Cursor
		if !p.More {
			break
		}
	}
	o.cursor = cursor
	if next != nil {
		o.set.Store(&next)
	}
	return nil
}

// copySet returns a mutable copy of the published set.
func (o *optOuts) copySet() map[uint64]struct{} {
	cur := o.set.Load()
	if cur == nil {
		return map[uint64]struct{}{}
	}
	next := make(map[uint64]struct{}, len(*cur)+16)
	for t := range *cur {
		next[t] = struct{}{}
	}
	return next
}

// fetchOptOutPage makes one GET /v1/sdk/opt-outs; nil, nil means the server
// does not have the endpoint.
func (c *Client) fetchOptOutPage(ctx context.Context, cursor string) (*optOutPage, error) {
	u := c.url + "/v1/sdk/opt-outs"
	if cursor != "" {
		u += "?cursor=" + url.QueryEscape(cursor)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, fmt.Errorf("sdk: fetch opt-outs: %w", err)
	}
	c.setHeaders(req)
	res, err := c.opts.httpClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("sdk: fetch opt-outs: %w", err)
	}
	defer drain(res)
	switch res.StatusCode {
	case http.StatusOK:
	case http.StatusNotFound:
		return nil, nil
	default:
		return nil, fmt.Errorf("sdk: fetch opt-outs: %w", serverError(res))
	}
	var p optOutPage
	if err := json.NewDecoder(io.LimitReader(res.Body, maxConfigBytes)).Decode(&p); err != nil {
		return nil, fmt.Errorf("sdk: fetch opt-outs: %w", err)
	}
	return &p, nil
}
