// Package logging builds the JSON slog logger every tidings process uses.
package logging

import (
	"io"
	"log/slog"
	"os"
	"strings"
)

// New returns a JSON logger to stderr at level ("debug", "info", "warn",
// "error"; anything else is info), with component set on every record.
func New(level, component string) *slog.Logger {
	return NewTo(os.Stderr, level, component)
}

// NewTo is New writing to w.
func NewTo(w io.Writer, level, component string) *slog.Logger {
	var l slog.Level
	switch strings.ToLower(level) {
	case "debug":
		l = slog.LevelDebug
	case "warn":
		l = slog.LevelWarn
	case "error":
		l = slog.LevelError
	}
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: l})).With("component", component)
}
