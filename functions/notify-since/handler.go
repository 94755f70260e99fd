// Package notifysince answers a user's committed notifications after a
// given id, oldest first, from the persist participant's database, for
// gateway-ws's replay on join and its gap fill after a broker outage.
// Internal.
package notifysince

import (
	"net/http"

	"tidings/lib/fn"
	"tidings/lib/notification"
	"tidings/lib/store"
	"tidings/lib/twopc"
)

// Handler reads notifications.
type Handler struct {
	persist store.Querier // the persist participant's database
}

// New returns a notify-since handler.
func New(persist store.Querier) *Handler { return &Handler{persist: persist} }

// Handle implements fn.Handler: 200 twopc.Since for a twopc.SinceQuery.
func (h *Handler) Handle(req fn.Request) (fn.Response, error) {
	if err := fn.RequireMethod(req, http.MethodPost); err != nil {
		return fn.Response{}, err
	}
	var in twopc.SinceQuery
	if err := fn.DecodeJSON(req, &in); err != nil {
		return fn.Response{}, err
	}
	if err := in.Check(); err != nil {
		return fn.Response{}, err
	}
	limit := in.Limit
	if limit == 0 {
		limit = twopc.MaxSince
	}
	list, newer, unacked, err := store.NotificationsSince(req.Context(), h.persist, in.User, in.Since, in.After, limit)
	if err != nil {
		return fn.Response{}, err
	}
	if list == nil {
		list = []notification.Notification{}
	}
	return fn.JSON(http.StatusOK, twopc.Since{Notifications: list, UnackedNewer: newer, Unacked: unacked})
}
