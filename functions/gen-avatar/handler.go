// Package genavatar is the gen-avatar function: a deterministic PNG
// identicon per seed, GET ?seed=&size=. It is public (no token) and its
// answers never change for a given seed and size, so they carry an ETag and
// may be cached for a year.
package genavatar

import (
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"strconv"
	"strings"
	"unicode/utf8"

	"tidings/lib/fn"
)

// MaxSeedBytes bounds a seed: an email or a user id fits with room to spare.
const MaxSeedBytes = 256

// renderVersion goes into every ETag: change it whenever Render draws
// differently, or clients keep the old pictures for a year.
const renderVersion = "identicon-v1"

// cacheControl lets browsers and CDNs keep an avatar for a year: a seed's
// picture at a size never changes (until renderVersion does, which changes
// the ETag too).
const cacheControl = "public, max-age=31536000, immutable"

// Handler renders avatars.
type Handler struct {
	render *Renderer
}

// New returns a gen-avatar handler.
func New() *Handler {
	return &Handler{render: NewRenderer()}
}

// Handle implements fn.Handler.
func (h *Handler) Handle(req fn.Request) (fn.Response, error) {
	if err := fn.RequireMethod(req, http.MethodGet, http.MethodHead); err != nil {
		return fn.Response{}, err
	}
	seed, size, err := parseQuery(req)
	if err != nil {
		return fn.Response{}, err
	}
	etag := ETag(seed, size)
	header := http.Header{
		"Etag":          {etag},
		"Cache-Control": {cacheControl},
	}
	if matches(req.Header.Get("If-None-Match"), etag) {
		return fn.Response{StatusCode: http.StatusNotModified, Header: header}, nil
	}
	png, err := h.render.Render(seed, size)
	if err != nil {
		return fn.Response{}, err
	}
	header.Set("Content-Type", "image/png")
	return fn.Response{StatusCode: http.StatusOK, Body: png, Header: header}, nil
}

// parseQuery reads seed (required, 1 to MaxSeedBytes bytes of UTF-8, not
// only spaces) and size (MinSize to MaxSize, DefaultSize when absent).
func parseQuery(req fn.Request) (string, int, error) {
	q, err := fn.ParseQuery(req)
	if err != nil {
		return "", 0, err
	}
	if len(q["seed"]) > 1 || len(q["size"]) > 1 {
		return "", 0, fn.BadRequest("seed and size may each be given once")
	}
	seed := q.Get("seed")
	switch {
	case strings.TrimSpace(seed) == "":
		return "", 0, fn.BadRequest("seed is required")
	case len(seed) > MaxSeedBytes:
		return "", 0, fn.BadRequest("seed is longer than %d bytes", MaxSeedBytes)
	case !utf8.ValidString(seed):
		return "", 0, fn.BadRequest("seed must be UTF-8")
	}
	size, err := fn.QueryInt(q, "size", DefaultSize, MinSize, MaxSize)
	if err != nil {
		return "", 0, err
	}
	return seed, int(size), nil
}

// ETag is the entity tag of the avatar of seed at size: a hash of both and
// of the renderer's version, quoted as HTTP wants it.
func ETag(seed string, size int) string {
	sum := sha256.Sum256([]byte(renderVersion + "\x00" + strconv.Itoa(size) + "\x00" + seed))
	return `"` + hex.EncodeToString(sum[:16]) + `"`
}

// matches reports whether an If-None-Match header names etag: "*", or a
// list of tags compared weakly (a W/ prefix is ignored), as RFC 9110 asks
// for GET.
func matches(ifNoneMatch, etag string) bool {
	for tag := range strings.SplitSeq(ifNoneMatch, ",") {
		tag = strings.TrimSpace(tag)
		if tag == "*" || strings.TrimPrefix(tag, "W/") == etag {
			return true
		}
	}
	return false
}
