// Package createapikey is the create-api-key function: the caller creates
// an API key for their app's backend, which acts as them within its
// scopes. The key is in the answer once; only its hash is stored.
package createapikey

import (
	"net/http"
	"slices"
	"strings"
	"unicode/utf8"

	"tidings/lib/auth"
	"tidings/lib/catalog"
	"tidings/lib/fn"
	"tidings/lib/store"
)

// Request is the body create-api-key accepts.
type Request struct {
	Name   string   `json:"name"`
	Scopes []string `json:"scopes"`
}

// Response is what a created key answers (201): the key itself is never
// shown again.
type Response struct {
	APIKey store.APIKey `json:"api_key"`
	Key    string       `json:"key"`
}

// MaxName bounds a key's name.
const MaxName = 100

// Handler creates API keys.
type Handler struct {
	db     store.Querier
	tokens *auth.Tokens
}

// New returns a create-api-key handler.
func New(db store.Querier, tokens *auth.Tokens) *Handler {
	return &Handler{db: db, tokens: tokens}
}

// Handle implements fn.Handler.
func (h *Handler) Handle(req fn.Request) (fn.Response, error) {
	if err := fn.RequireMethod(req, http.MethodPost); err != nil {
		return fn.Response{}, err
	}
	caller, err := h.tokens.KnownCaller(req, h.db)
	if err != nil {
		return fn.Response{}, err
	}
	var in Request
	if err := fn.DecodeJSON(req, &in); err != nil {
		return fn.Response{}, err
	}
	in.Name = strings.TrimSpace(in.Name)
	if in.Name == "" || utf8.RuneCountInString(in.Name) > MaxName {
		return fn.Response{}, fn.BadRequest("name must be 1 to %d characters", MaxName)
	}
	scopes, err := checkScopes(in.Scopes)
	if err != nil {
		return fn.Response{}, err
	}
	key, hash := auth.NewAPIKey()
	created, err := store.CreateAPIKey(req.Context(), h.db, caller, in.Name, scopes, hash)
	if err != nil {
		return fn.Response{}, auth.UserGone(err)
	}
	return fn.JSON(http.StatusCreated, Response{APIKey: created, Key: key})
}

// checkScopes returns the scopes sorted, each once, or a 400 naming the
// known ones.
func checkScopes(in []string) ([]string, error) {
	if len(in) == 0 {
		return nil, fn.BadRequest("scopes must list at least one of %v", catalog.Scopes)
	}
	for _, s := range in {
		if !slices.Contains(catalog.Scopes, s) {
			return nil, fn.BadRequest("unknown scope %q: scopes are %v", s, catalog.Scopes)
		}
	}
	out := slices.Clone(in)
	slices.Sort(out)
	return slices.Compact(out), nil
}
