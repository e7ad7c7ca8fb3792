package api

import "log/slog"

// levelFor is the log level of a request line: errors for 5xx, warnings for 4xx.
func levelFor(status int) slog.Level {
	switch {
	case status >= 500:
		return slog.LevelError
	case status >= 400:
		return slog.LevelWarn
	}
	return slog.LevelInfo
}
