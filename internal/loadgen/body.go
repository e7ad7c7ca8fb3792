package loadgen

import (
	"bytes"
	"strconv"
)

// template is a request body split around its one placeholder, so that a
// body with a fresh id costs two copies and an integer format, not a
// fmt.Sprintf or a JSON encoding.
type template struct {
	prefix, suffix []byte
	has            bool // the placeholder was found
}

func newTemplate(body []byte, placeholder string) template {
	if placeholder == "" {
		return template{prefix: body}
	}
	i := bytes.Index(body, []byte(placeholder))
	if i < 0 {
		return template{prefix: body}
	}
	return template{prefix: body[:i], suffix: body[i+len(placeholder):], has: true}
}

// size is an upper bound of an expanded body's length.
func (t template) size() int { return len(t.prefix) + len(t.suffix) + 48 }

// appendBody appends the body for request seq of worker to dst: the
// placeholder becomes "w<worker>-<seq>", unique within a run.
func (t template) appendBody(dst []byte, worker int, seq uint64) []byte {
	dst = append(dst, t.prefix...)
	if !t.has {
		return dst
	}
	dst = append(dst, 'w')
	dst = strconv.AppendInt(dst, int64(worker), 10)
	dst = append(dst, '-')
	dst = strconv.AppendUint(dst, seq, 10)
	return append(dst, t.suffix...)
}
