// Package function is the starter `faas-cli new --lang tidings-go` copies
// into a new function's folder: rename the package after the function
// (create-topic is createtopic), register it in functions/functions.go and
// give it an entry in stack.yml (see the template's welcome message).
package function

import (
	"net/http"

	"tidings/lib/fn"
)

// Request is what the function accepts.
type Request struct {
	Name string `json:"name"`
}

// Response is what it answers.
type Response struct {
	Greeting string `json:"greeting"`
}

// Handler holds the function's dependencies (a database pool, the token
// issuer); this starter has none.
type Handler struct{}

// New returns the handler.
func New() *Handler { return &Handler{} }

// Handle implements fn.Handler: decode, validate, act, encode.
func (h *Handler) Handle(req fn.Request) (fn.Response, error) {
	if err := fn.RequireMethod(req, http.MethodPost); err != nil {
		return fn.Response{}, err
	}
	var in Request
	if err := fn.DecodeJSON(req, &in); err != nil {
		return fn.Response{}, err
	}
	if in.Name == "" {
		return fn.Response{}, fn.BadRequest("name is required")
	}
	return fn.JSON(http.StatusOK, Response{Greeting: "Hello, " + in.Name})
}
