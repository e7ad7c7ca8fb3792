// Package flywheel is the vocabulary of the Flywheel experimentation
// platform: experiments, metrics, API keys and errors, with the rules that
// make them valid. It is the centre of the import graph: it imports only the
// standard library and the pure assign package, and every other package
// (api, store, cmd) speaks in its types. Storage is reached through the
// interfaces declared here, so the api never sees a database.
package flywheel

import "time"

// Page is a page of a listing: the items, and the cursor of the next page
// ("" on the last one).
type Page[T any] struct {
	Items      []T    `json:"items"`
	NextCursor string `json:"next_cursor,omitempty"`
}

// Clock returns the current time; the server passes time.Now, tests a fixed
// clock. Pure packages never read the clock themselves.
type Clock func() time.Time
