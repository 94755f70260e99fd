// Package notifyprepare is the persist participant's prepare: it stores a
// notification and its deliveries, invisible to readers until commit. The
// deliveries are the transaction's recipient set, which the coordinator
// fixed in the directory and this reads in chunks.
// Internal: only gateway-ws, holding the internal key, may call it.
package notifyprepare

import (
	"context"
	"errors"
	"net/http"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"tidings/lib/barrier"
	"tidings/lib/fn"
	"tidings/lib/notification"
	"tidings/lib/store"
	"tidings/lib/twopc"
)

// Handler prepares notifications.
type Handler struct {
	topics  store.Querier // the directory, for the topic's owner and the recipient set
	db      *pgxpool.Pool // the persist participant's database
	barrier *barrier.Barrier
}

// New returns a notify-prepare handler.
func New(topics store.Querier, db *pgxpool.Pool) *Handler {
	return &Handler{topics: topics, db: db, barrier: barrier.New(db, twopc.Persist)}
}

// Handle implements fn.Handler: 200 with a yes vote, or an error (a no).
func (h *Handler) Handle(req fn.Request) (fn.Response, error) {
	if err := fn.RequireMethod(req, http.MethodPost); err != nil {
		return fn.Response{}, err
	}
	var in twopc.NotifyPrepare
	if err := fn.DecodeJSON(req, &in); err != nil {
		return fn.Response{}, err
	}
	if err := validate(&in); err != nil {
		return fn.Response{}, err
	}
	ctx := req.Context()
	if err := h.checkOwner(ctx, in.Draft); err != nil {
		return fn.Response{}, err
	}
	err := h.barrier.Prepare(ctx, in.TxID, func(ctx context.Context, tx pgx.Tx) error {
		_, err := store.PrepareNotification(ctx, tx, store.ReadsThrough(h.topics, h.db, tx), in.TxID, in.Draft, in.Recipients)
		return err
	})
	if err != nil {
		return fn.Response{}, barrier.Answer(err)
	}
	id, err := store.NotificationByTx(ctx, h.db, in.TxID)
	if err != nil {
		return fn.Response{}, err
	}
	return fn.JSON(http.StatusOK, twopc.Vote{TxID: in.TxID, Prepared: true, NotificationID: id})
}

// checkOwner checks that a topic's notification comes from its owner.
// The coordinator checked before the transaction began; this participant
// checks again because it stores the notification under the sender's
// name, and trusts no caller with that (the internal key guards who may
// call, not what they may ask). A direct notification has no sender.
func (h *Handler) checkOwner(ctx context.Context, d notification.Draft) error {
	if d.Direct() {
		return nil
	}
	owner, err := store.TopicOwner(ctx, h.topics, d.TopicID)
	if errors.Is(err, store.ErrNotFound) {
		return fn.NotFound("topic %d does not exist", d.TopicID)
	}
	if err != nil {
		return err
	}
	if owner != d.SenderID {
		return fn.Forbidden("only the topic's owner may publish on it")
	}
	return nil
}

// validate checks the request and trims its title, as stored.
func validate(in *twopc.NotifyPrepare) error {
	if err := twopc.CheckTxID(in.TxID); err != nil {
		return err
	}
	if err := in.Draft.Check(); err != nil {
		return err
	}
	return twopc.CheckRecipients(in.Recipients)
}
