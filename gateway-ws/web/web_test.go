package web

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"strings"
	"testing"
)

func get(t *testing.T, h http.Handler, path string, header http.Header) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(http.MethodGet, path, nil)
	for k, v := range header {
		req.Header[k] = v
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

func TestPagesAndAssetsAreServedWithTheirTypesAndPolicy(t *testing.T) {
	h := Handler()
	cases := []struct {
		path, ctype, contains string
	}{
		{"/", "text/html", `src="/assets/app.js"`},
		{"/dashboard", "text/html", `src="/assets/dashboard.js"`},
		{"/assets/app.js", "text/javascript", `from "/assets/phoenix.mjs"`},
		{"/assets/phoenix.mjs", "text/javascript", "export {"},
		{"/assets/style.css", "text/css", ".badge"},
	}
	for _, tc := range cases {
		rec := get(t, h, tc.path, nil)
		if rec.Code != http.StatusOK || !strings.HasPrefix(rec.Header().Get("Content-Type"), tc.ctype) ||
			!strings.Contains(rec.Body.String(), tc.contains) {
			t.Errorf("GET %s: %d %q, want 200 %s containing %q", tc.path, rec.Code, rec.Header().Get("Content-Type"), tc.ctype, tc.contains)
		}
		if rec.Header().Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("GET %s: no nosniff header", tc.path)
		}
		csp := rec.Header().Get("Content-Security-Policy")
		if tc.ctype == "text/html" && !strings.Contains(csp, "script-src 'self'") {
			t.Errorf("GET %s: Content-Security-Policy %q, want scripts from self only", tc.path, csp)
		}
		etag := rec.Header().Get("ETag")
		if again := get(t, h, tc.path, http.Header{"If-None-Match": {etag}}); etag == "" || again.Code != http.StatusNotModified {
			t.Errorf("GET %s with its ETag %q: %d, want 304", tc.path, etag, again.Code)
		}
	}
	for _, path := range []string{"/assets/", "/assets/nope.js", "/assets/../pages/index.html", "/nope"} {
		if rec := get(t, h, path, nil); rec.Code != http.StatusNotFound {
			t.Errorf("GET %s: %d, want 404", path, rec.Code)
		}
	}
}

// Every asset a page or script names is embedded, so a renamed file
// cannot leave a page half broken.
func TestEveryReferencedAssetExists(t *testing.T) {
	h := Handler().(*handler)
	ref := regexp.MustCompile(`"(/assets/[^"]+)"`)
	for _, name := range []string{"pages/index.html", "pages/dashboard.html", "assets/app.js", "assets/dashboard.js"} {
		body, err := files.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range ref.FindAllStringSubmatch(string(body), -1) {
			if h.assets[m[1]] == nil {
				t.Errorf("%s refers to %s, which is not embedded", name, m[1])
			}
		}
	}
}

// The copied phoenix client is the version the browser test pins, and
// unchanged: its header names the version and the original's sha256, which
// must match what follows the header; package.json pins that exact
// version and package-lock.json resolved it. When the browser test's
// node_modules is installed, the copy equals the package's file byte for
// byte.
func TestPhoenixCopyMatchesThePinnedPackage(t *testing.T) {
	var pkg struct {
		DevDependencies map[string]string `json:"devDependencies"`
	}
	readJSON(t, "test/package.json", &pkg)
	version := pkg.DevDependencies["phoenix"]
	if !regexp.MustCompile(`^\d+\.\d+\.\d+$`).MatchString(version) {
		t.Fatalf("test/package.json pins phoenix at %q, want an exact version", version)
	}
	var lock struct {
		Packages map[string]struct {
			Version string `json:"version"`
		} `json:"packages"`
	}
	readJSON(t, "test/package-lock.json", &lock)
	if got := lock.Packages["node_modules/phoenix"].Version; got != version {
		t.Errorf("package-lock.json has phoenix %q, package.json %q", got, version)
	}

	copied, err := os.ReadFile("assets/phoenix.mjs")
	if err != nil {
		t.Fatal(err)
	}
	header, original, ok := bytes.Cut(copied, []byte("\n */\n"))
	if !ok {
		t.Fatal("assets/phoenix.mjs has no header comment")
	}
	if !bytes.Contains(header, []byte("phoenix "+version+" (npm")) {
		t.Errorf("the header of assets/phoenix.mjs does not name phoenix %s:\n%s", version, header)
	}
	if !bytes.Contains(header, []byte("MIT License")) || !bytes.Contains(header, []byte("Copyright (c) 2014 Chris McCord")) {
		t.Error("the header of assets/phoenix.mjs lacks the MIT license and its copyright line")
	}
	sum := sha256.Sum256(original)
	if !bytes.Contains(header, []byte("sha256 of the original file: "+hex.EncodeToString(sum[:]))) {
		t.Errorf("the copy's body hashes to %x, which its header does not record: edited after copying?", sum)
	}
	if upstream, err := os.ReadFile("test/node_modules/phoenix/priv/static/phoenix.mjs"); err == nil && !bytes.Equal(upstream, original) {
		t.Error("assets/phoenix.mjs differs from test/node_modules/phoenix/priv/static/phoenix.mjs")
	}
}

func readJSON(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}
