package gateway

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/redis/go-redis/v9"

	"tidings/gateway-ws/coordinator"
	"tidings/lib/fn"
)

// Idempotency keys: a client that sends the same publish again (a retry
// after a lost answer) with the same Idempotency-Key header gets the first
// answer again instead of a second notification. The state is one Redis
// key per caller and key, so every replica sees it (each script below
// touches that key alone: on a Redis Cluster it runs on the key's slot):
//
//   - the first request claims it (a Lua compare-and-set) as in flight,
//     with the hash of its method, path and body, for idemLease;
//   - its answer replaces the claim for IdempotencyTTL, unless the answer
//     wrote nothing and invites a retry (429, 503 but pending), in which
//     case the claim is released and the next try runs afresh;
//   - a request finding the key answers the kept answer (with
//     Idempotent-Replayed: true) if its hash is the same, else 409
//     idempotency_key_reused; a claim still in flight is 409
//     idempotency_key_in_flight.
//
// Redis not answering is a 503: without the key's state a retry could
// publish twice.

// The header, and how long an answer is kept.
const (
	IdempotencyKeyHeader = "Idempotency-Key"
	IdempotencyTTL       = 24 * time.Hour
	// MaxIdempotencyKey bounds a key's length (bytes of printable ASCII).
	MaxIdempotencyKey = 255
)

// idemEntry is the value kept under a key: a claim in flight (Status 0,
// with the claimant's Token) or a final answer.
type idemEntry struct {
	Hash   string `json:"hash"`
	Token  string `json:"token,omitempty"`
	Status int    `json:"status,omitempty"`
	Body   []byte `json:"body,omitempty"`
}

// idemClaim takes a free key or returns what it holds.
var idemClaim = redis.NewScript(`
local v = redis.call('GET', KEYS[1])
if v then return v end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return false`)

// idemSettle replaces the claim ARGV[1], if it still holds the key, by the
// answer ARGV[2] for ARGV[3] ms, or releases it when ARGV[2] is empty.
var idemSettle = redis.NewScript(`
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if ARGV[2] == '' then redis.call('DEL', KEYS[1]) else redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3]) end
return 1`)

// idemLease is how long a claim holds its key: as long as the request may
// run (PublishTimeout, then the commit's PhaseTwoTimeout, which goes on
// after the publisher's context ends), with a margin. A replica that dies
// mid-request leaves its claim to expire then.
func (s *Server) idemLease() time.Duration {
	phaseTwo := s.cfg.TwoPC.PhaseTwoTimeout
	if phaseTwo <= 0 {
		phaseTwo = coordinator.DefaultSettings().PhaseTwoTimeout
	}
	return 2*s.cfg.PublishTimeout + phaseTwo
}

// answerOnce reads the request's body and runs do with it under
// PublishTimeout, and writes its answer, once per Idempotency-Key of scope
// (the caller, authenticated already) when the request has one. do
// returns the answer and whether it is final (kept for the key's retries).
func (s *Server) answerOnce(w http.ResponseWriter, r *http.Request, scope string,
	do func(ctx context.Context, body []byte) (fn.Response, bool)) {
	body, ferr := fn.ReadBody(w, r, s.cfg.MaxBodyBytes)
	if ferr != nil {
		fn.WriteError(w, ferr)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.PublishTimeout)
	defer cancel()
	key, ok := r.Header[IdempotencyKeyHeader]
	if !ok {
		resp, _ := do(ctx, body)
		fn.WriteResponse(w, resp)
		return
	}
	if err := checkIdempotencyKey(key); err != nil {
		fn.WriteError(w, err)
		return
	}
	sum := sha256.Sum256([]byte(key[0]))
	rkey := fmt.Sprintf("%sidem:%s:%s", s.cfg.RedisPrefix, scope, hex.EncodeToString(sum[:]))
	reqSum := sha256.Sum256(append([]byte(r.Method+" "+r.URL.Path+"\n"), body...))
	claim := idemEntry{Hash: hex.EncodeToString(reqSum[:]), Token: rand.Text()}
	claimed, _ := json.Marshal(claim)

	rctx, rcancel := context.WithTimeout(ctx, brokerCallTimeout)
	held, err := idemClaim.Run(rctx, s.rdb, []string{rkey}, claimed, s.idemLease().Milliseconds()).Text()
	rcancel()
	switch {
	case errors.Is(err, redis.Nil): // claimed: run it
	case err != nil:
		s.log.Warn("cannot read an idempotency key", "key", rkey, "err", err)
		fn.WriteError(w, fn.Unavailable("the Idempotency-Key cannot be checked now; retry later"))
		return
	default:
		fn.WriteResponse(w, replay(held, claim.Hash))
		return
	}

	resp, final := do(ctx, body)
	answer := ""
	if final {
		b, _ := json.Marshal(idemEntry{Hash: claim.Hash, Status: resp.StatusCode, Body: resp.Body})
		answer = string(b)
	}
	sctx, scancel := context.WithTimeout(context.WithoutCancel(ctx), brokerCallTimeout)
	if err := idemSettle.Run(sctx, s.rdb, []string{rkey}, claimed, answer, IdempotencyTTL.Milliseconds()).Err(); err != nil {
		s.log.Warn("cannot keep the answer of an idempotency key; its claim expires after the lease", "key", rkey, "err", err)
	}
	scancel()
	fn.WriteResponse(w, resp)
}

// replay is the answer to a request whose key holds held: the kept
// answer, or a 409.
func replay(held, hash string) fn.Response {
	var e idemEntry
	if err := json.Unmarshal([]byte(held), &e); err != nil {
		return fn.ErrorResponse(fn.Internal())
	}
	switch {
	case e.Hash != hash:
		return fn.ErrorResponse(fn.Errorf(http.StatusConflict, "idempotency_key_reused",
			"this Idempotency-Key was used for another request (another path or body) within %s", IdempotencyTTL))
	case e.Status == 0:
		return fn.ErrorResponse(fn.Errorf(http.StatusConflict, "idempotency_key_in_flight",
			"a request with this Idempotency-Key is still being answered; retry shortly"))
	}
	return fn.Response{StatusCode: e.Status, Body: e.Body, Header: http.Header{
		"Content-Type": {"application/json"}, "Idempotent-Replayed": {"true"},
	}}
}

// checkIdempotencyKey refuses a header sent twice, empty, too long, or
// holding anything but printable ASCII.
func checkIdempotencyKey(values []string) *fn.Error {
	if len(values) != 1 || len(values[0]) == 0 || len(values[0]) > MaxIdempotencyKey {
		return fn.BadRequest("%s must be one value of 1 to %d characters", IdempotencyKeyHeader, MaxIdempotencyKey)
	}
	for _, c := range []byte(values[0]) {
		if c < 0x20 || c > 0x7e {
			return fn.BadRequest("%s must be printable ASCII", IdempotencyKeyHeader)
		}
	}
	return nil
}
