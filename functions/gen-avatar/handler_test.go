package genavatar_test

import (
	"bytes"
	"image"
	"image/png"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"

	genavatar "tidings/functions/gen-avatar"
	"tidings/lib/fn"
)

// get calls the handler as the HTTP adapter would for GET /?query.
func get(t *testing.T, h fn.Handler, query string, header http.Header) fn.Response {
	t.Helper()
	if header == nil {
		header = http.Header{}
	}
	resp, err := h.Handle(fn.Request{Method: http.MethodGet, QueryString: query, Header: header})
	if err != nil {
		if e := fn.AsError(err); e != nil {
			return fn.ErrorResponse(e)
		}
		t.Fatalf("GET ?%s: %v", query, err)
	}
	return resp
}

func query(seed, size string) string {
	v := url.Values{"seed": {seed}}
	if size != "" {
		v.Set("size", size)
	}
	return v.Encode()
}

func TestSameSeedGivesTheSameBytes(t *testing.T) {
	for _, size := range []string{"16", "64", "512"} {
		a := get(t, genavatar.New(), query("ada@example.com", size), nil)
		b := get(t, genavatar.New(), query("ada@example.com", size), nil)
		if a.StatusCode != http.StatusOK || !bytes.Equal(a.Body, b.Body) {
			t.Errorf("size %s: two renders of one seed differ (status %d, %d and %d bytes)", size, a.StatusCode, len(a.Body), len(b.Body))
		}
	}
}

func TestDifferentSeedsGiveDifferentAvatars(t *testing.T) {
	h := genavatar.New()
	seen := map[string]string{}
	for _, seed := range []string{"1", "2", "3", "ada@example.com", "ada@example.co", "Ada@example.com", "bob", "bob ", "ünïcödé", strings.Repeat("x", 256)} {
		body := string(get(t, h, query(seed, "64"), nil).Body)
		if other, ok := seen[body]; ok {
			t.Errorf("seeds %q and %q give the same avatar", other, seed)
		}
		seen[body] = seed
	}
}

func TestAvatarDecodesAsASymmetricPNGOfTheAskedSize(t *testing.T) {
	cases := []struct {
		size string
		want int
	}{
		{"16", 16}, {"17", 17}, {"100", 100}, {"512", 512},
		{"", genavatar.DefaultSize},
	}
	for _, tc := range cases {
		resp := get(t, genavatar.New(), query("grace", tc.size), nil)
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "image/png" {
			t.Fatalf("size %q: status %d, type %q", tc.size, resp.StatusCode, resp.Header.Get("Content-Type"))
		}
		img, err := png.Decode(bytes.NewReader(resp.Body))
		if err != nil {
			t.Fatalf("size %q: not a PNG: %v", tc.size, err)
		}
		if b := img.Bounds(); b != image.Rect(0, 0, tc.want, tc.want) {
			t.Fatalf("size %q: bounds %v, want %dx%d", tc.size, b, tc.want, tc.want)
		}
		colours := map[[4]uint32]bool{}
		for y := range tc.want {
			for x := range tc.want {
				r, g, b, a := img.At(x, y).RGBA()
				colours[[4]uint32{r, g, b, a}] = true
				if img.At(x, y) != img.At(tc.want-1-x, y) {
					t.Fatalf("size %q: pixel (%d,%d) differs from its mirror", tc.size, x, y)
				}
			}
		}
		if len(colours) != 2 {
			t.Fatalf("size %q: %d colours, want background and one foreground", tc.size, len(colours))
		}
	}
}

func TestBadSizesAndSeedsGet400(t *testing.T) {
	cases := []struct{ name, query string }{
		{"no seed", "size=64"},
		{"empty seed", "seed=&size=64"},
		{"blank seed", "seed=%20%20&size=64"},
		{"seed over 256 bytes", query(strings.Repeat("x", 257), "64")},
		{"seed not UTF-8", "seed=%ff%fe"},
		{"two seeds", "seed=a&seed=b"},
		{"size below 16", query("a", "15")},
		{"size 0", query("a", "0")},
		{"negative size", query("a", "-64")},
		{"size above 512", query("a", "513")},
		{"size not a number", query("a", "big")},
		{"fractional size", query("a", "64.5")},
		{"two sizes", "seed=a&size=16&size=32"},
		{"malformed query", "seed=%zz"},
	}
	h := genavatar.New()
	for _, tc := range cases {
		resp := get(t, h, tc.query, nil)
		if resp.StatusCode != http.StatusBadRequest || !bytes.Contains(resp.Body, []byte(`"code":"bad_request"`)) {
			t.Errorf("%s (?%s): status %d body %s, want 400 bad_request", tc.name, tc.query, resp.StatusCode, resp.Body)
		}
	}
}

func TestETagNamesSeedAndSizeAndAMatchGets304(t *testing.T) {
	h := genavatar.New()
	first := get(t, h, query("ada", "64"), nil)
	etag := first.Header.Get("ETag")
	if etag == "" || etag != genavatar.ETag("ada", 64) {
		t.Fatalf("ETag %q, want %q", etag, genavatar.ETag("ada", 64))
	}
	if genavatar.ETag("ada", 65) == etag || genavatar.ETag("adb", 64) == etag {
		t.Fatal("ETag does not change with the size or the seed")
	}
	cases := []struct {
		ifNoneMatch string
		want        int
	}{
		{etag, http.StatusNotModified},
		{"W/" + etag, http.StatusNotModified},
		{`"other", ` + etag, http.StatusNotModified},
		{"*", http.StatusNotModified},
		{`"other"`, http.StatusOK},
		{genavatar.ETag("ada", 65), http.StatusOK},
	}
	for _, tc := range cases {
		resp := get(t, h, query("ada", "64"), http.Header{"If-None-Match": {tc.ifNoneMatch}})
		if resp.StatusCode != tc.want {
			t.Errorf("If-None-Match %s: status %d, want %d", tc.ifNoneMatch, resp.StatusCode, tc.want)
		}
		if tc.want == http.StatusNotModified && (len(resp.Body) != 0 || resp.Header.Get("ETag") != etag) {
			t.Errorf("If-None-Match %s: 304 with %d body bytes and ETag %q", tc.ifNoneMatch, len(resp.Body), resp.Header.Get("ETag"))
		}
	}
}

// TestAvatarOverHTTPCarriesTheCacheHeaders goes through the HTTP adapter the
// watchdog and the dev host use, query string and headers included.
func TestAvatarOverHTTPCarriesTheCacheHeaders(t *testing.T) {
	adapter := &fn.Adapter{Handler: genavatar.New()}
	w := httptest.NewRecorder()
	adapter.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/?seed=ada&size=32", nil))
	if w.Code != http.StatusOK {
		t.Fatalf("status %d: %s", w.Code, w.Body)
	}
	for k, want := range map[string]string{
		"Content-Type":  "image/png",
		"Cache-Control": "public, max-age=31536000, immutable",
		"ETag":          genavatar.ETag("ada", 32),
	} {
		if got := w.Header().Get(k); got != want {
			t.Errorf("%s: %q, want %q", k, got, want)
		}
	}
	if img, err := png.Decode(w.Body); err != nil || img.Bounds().Dx() != 32 {
		t.Fatalf("body: %v", err)
	}

	w = httptest.NewRecorder()
	r := httptest.NewRequest(http.MethodGet, "/?seed=ada&size=32", nil)
	r.Header.Set("If-None-Match", genavatar.ETag("ada", 32))
	adapter.ServeHTTP(w, r)
	if w.Code != http.StatusNotModified || w.Body.Len() != 0 {
		t.Fatalf("revalidation: status %d with %d bytes, want 304 and none", w.Code, w.Body.Len())
	}

	w = httptest.NewRecorder()
	adapter.ServeHTTP(w, httptest.NewRequest(http.MethodPost, "/?seed=ada", nil))
	if w.Code != http.StatusMethodNotAllowed {
		t.Fatalf("POST: status %d, want 405", w.Code)
	}
}

// BenchmarkRender is one avatar, PNG encoding included; infra/bench/avatar
// compares it with jdenticon.
func BenchmarkRender(b *testing.B) {
	for _, size := range []int{64, 256} {
		b.Run(strconv.Itoa(size), func(b *testing.B) {
			r := genavatar.NewRenderer()
			for b.Loop() {
				if _, err := r.Render("ada@example.com", size); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
