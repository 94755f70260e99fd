package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"tidings/lib/fn"
	"tidings/lib/ratelimit"
)

// apiTimeout bounds the Redis work of one API request.
const apiTimeout = 3 * time.Second

// Unavailable is the answer while Redis cannot be reached.
func Unavailable() *fn.Error {
	return &fn.Error{Status: http.StatusServiceUnavailable, Code: "unavailable",
		Message: "the job queue is unavailable (its store cannot be reached); retry later"}
}

// Handler is the job API, to mount at /api/jobs/ with a Bearer token:
//
//	POST /api/jobs/<function>   body: the payload (a JSON object)  → 202 {"id"}
//	GET  /api/jobs/<id>                                            → 200 Job
//
// Only Config.PublicFunctions (by default the catalogue's queueable
// functions) may be enqueued (another name is 404). A job
// is visible to its owner only: anyone else's GET is 404, as is a job
// past its TTL. Malformed input is 400, a payload over
// Config.MaxPayloadBytes 413, a missing or bad token 401, an owner past
// Config.Quota 429 "rate_limited" with Retry-After, and Redis being
// unreachable 503 "unavailable".
func (q *Queue) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/api/jobs/{name}", q.serve)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		fn.WriteError(w, fn.NotFound("no job API at %s", r.URL.Path))
	})
	return mux
}

func (q *Queue) serve(w http.ResponseWriter, r *http.Request) {
	user, err := q.user(r)
	if err != nil {
		writeError(w, err)
		return
	}
	name := r.PathValue("name")
	switch r.Method {
	case http.MethodPost:
		q.serveEnqueue(w, r, user, name)
	case http.MethodGet, http.MethodHead:
		q.serveGet(w, r, user, name)
	default:
		w.Header().Set("Allow", "GET, HEAD, POST")
		fn.WriteError(w, fn.Errorf(http.StatusMethodNotAllowed, "method_not_allowed", "use POST to enqueue, GET to read a job"))
	}
}

// user is the user whose Bearer token authorises r.
func (q *Queue) user(r *http.Request) (int64, error) {
	return q.tokens.Bearer(r.Header)
}

func (q *Queue) serveEnqueue(w http.ResponseWriter, r *http.Request, user int64, function string) {
	if !q.cfg.public(function) {
		fn.WriteError(w, fn.NotFound("no job function named %q", function))
		return
	}
	payload, ferr := fn.ReadBody(w, r, q.cfg.MaxPayloadBytes)
	if ferr != nil {
		fn.WriteError(w, ferr)
		return
	}
	if strings.TrimSpace(string(payload)) == "" {
		payload = []byte(`{}`)
	}
	var fields map[string]json.RawMessage
	if err := fn.DecodeBody(payload, &fields); err != nil {
		fn.WriteError(w, fn.AsError(err))
		return
	}
	if ratelimit.Refuse(w, q.cfg.Limiter.Take(r.Context(), q.cfg.Quota, strconv.FormatInt(user, 10))) {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), apiTimeout)
	defer cancel()
	id, err := q.Enqueue(ctx, user, function, payload)
	if err != nil {
		writeError(w, err)
		return
	}
	w.Header().Set("Location", "/api/jobs/"+id)
	fn.WriteJSON(w, http.StatusAccepted, map[string]string{"id": id})
}

func (q *Queue) serveGet(w http.ResponseWriter, r *http.Request, user int64, id string) {
	ctx, cancel := context.WithTimeout(r.Context(), apiTimeout)
	defer cancel()
	job, err := q.Get(ctx, id)
	if err == nil && job.Owner != user {
		err = ErrNotFound // another user's job does not exist for this one
	}
	if err != nil {
		writeError(w, err)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	fn.WriteJSON(w, http.StatusOK, job)
}

// writeError maps an error to the contract's shape: client errors keep
// their status, anything else is Redis failing, so 503.
func writeError(w http.ResponseWriter, err error) {
	switch e := fn.AsError(err); {
	case e != nil:
		fn.WriteError(w, e)
	case errors.Is(err, ErrNotFound):
		fn.WriteError(w, fn.NotFound("no such job (it may have expired)"))
	case errors.Is(err, ErrBadPayload):
		fn.WriteError(w, fn.BadRequest("%s", strings.TrimPrefix(err.Error(), ErrBadPayload.Error()+": ")))
	default:
		w.Header().Set("Retry-After", "1")
		fn.WriteError(w, Unavailable())
	}
}
