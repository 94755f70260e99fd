package main

import (
	"fmt"
	"net/url"
)

// withDatabase returns a PostgreSQL URL with its database replaced.
func withDatabase(raw, name string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", fmt.Errorf("parse %s: %w", raw, err)
	}
	u.Path = "/" + name
	return u.String(), nil
}
