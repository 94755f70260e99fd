// Package notifyacks is the persist participant's side of the ack relay:
// it forgets the acks the counter has applied and answers the next ones
// still waiting in its outbox, oldest first. gateway-ws's relay calls it,
// then counter-ack with its answer, then it again with those ids done.
// Internal.
package notifyacks

import (
	"net/http"

	"github.com/jackc/pgx/v5/pgxpool"

	"tidings/lib/fn"
	"tidings/lib/store"
	"tidings/lib/twopc"
)

// Handler serves the ack outbox.
type Handler struct {
	persist *pgxpool.Pool // the persist participant's database
}

// New returns a notify-acks handler.
func New(persist *pgxpool.Pool) *Handler { return &Handler{persist: persist} }

// Handle implements fn.Handler. Forgetting an ack twice, or one that is
// gone, is no error: relays on several replicas may finish the same acks.
func (h *Handler) Handle(req fn.Request) (fn.Response, error) {
	if err := fn.RequireMethod(req, http.MethodPost); err != nil {
		return fn.Response{}, err
	}
	var in twopc.AckQuery
	if err := fn.DecodeJSON(req, &in); err != nil {
		return fn.Response{}, err
	}
	if err := in.Check(); err != nil {
		return fn.Response{}, err
	}
	ctx := req.Context()
	if len(in.Done) > 0 {
		if err := store.ForgetAcks(ctx, h.persist, in.Done); err != nil {
			return fn.Response{}, err
		}
	}
	limit := in.Limit
	if limit == 0 {
		limit = twopc.MaxAcks
	}
	pending, err := store.PendingAcks(ctx, h.persist, limit)
	if err != nil {
		return fn.Response{}, err
	}
	return fn.JSON(http.StatusOK, twopc.Acks{Acks: pending})
}
