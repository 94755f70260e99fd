// Package web is tidings' browser side, embedded in gateway-ws: the web
// client at /, the live dashboard at /dashboard, and their assets at
// /assets/. Plain HTML, CSS and JavaScript modules, no build step; the
// client speaks Phoenix Channels through the official phoenix client
// (assets/phoenix.mjs, a verbatim copy of the npm package's ESM build) and
// calls the functions through gateway-ws's same-origin /function/<name>.
package web

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"strings"
	"time"
)

//go:embed pages assets
var files embed.FS

// file is one embedded file with what serving it needs, computed once.
type file struct {
	name string
	body []byte
	etag string
	ctyp string
}

// Handler serves the pages and the assets. Mount it at "GET /{$}",
// "GET /dashboard" and "GET /assets/".
func Handler() http.Handler {
	h := &handler{assets: map[string]*file{}}
	load := func(name string) *file {
		body, err := files.ReadFile(name)
		if err != nil {
			panic(err) // embedded at build time: cannot be missing
		}
		sum := sha256.Sum256(body)
		ctyp := mime.TypeByExtension(path.Ext(name))
		if strings.HasSuffix(name, ".mjs") || strings.HasSuffix(name, ".js") {
			ctyp = "text/javascript; charset=utf-8" // whatever the host's mime table says
		}
		return &file{name: name, body: body, etag: `"` + hex.EncodeToString(sum[:8]) + `"`, ctyp: ctyp}
	}
	h.index = load("pages/index.html")
	h.dashboard = load("pages/dashboard.html")
	_ = fs.WalkDir(files, "assets", func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			h.assets["/"+p] = load(p)
		}
		return nil
	})
	return h
}

type handler struct {
	index, dashboard *file
	assets           map[string]*file
}

// contentSecurityPolicy allows only the gateway's own scripts, styles,
// images and connections (the socket included): no inline code, so that
// an injected notification title can never run.
const contentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; " +
	"connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var f *file
	switch p := r.URL.Path; {
	case p == "/":
		f = h.index
	case p == "/dashboard":
		f = h.dashboard
	default:
		f = h.assets[p]
	}
	if f == nil {
		http.NotFound(w, r)
		return
	}
	hd := w.Header()
	hd.Set("Content-Type", f.ctyp)
	hd.Set("ETag", f.etag)
	// Revalidate every time (a 304 while unchanged): a new gateway version
	// takes effect at the next reload, without versioned file names.
	hd.Set("Cache-Control", "no-cache")
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("Referrer-Policy", "no-referrer")
	if strings.HasPrefix(f.ctyp, "text/html") {
		hd.Set("Content-Security-Policy", contentSecurityPolicy)
	}
	http.ServeContent(w, r, f.name, time.Time{}, bytes.NewReader(f.body))
}
