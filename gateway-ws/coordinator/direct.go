package coordinator

import (
	"context"
	"fmt"
	"strings"

	"tidings/lib/fn"
	"tidings/lib/notification"
	"tidings/lib/store"
)

// MaxDirectUsers bounds the user ids of one direct notification: the
// request body stays small (well under MAX_BODY_BYTES) and a larger
// audience is what a topic is for.
const MaxDirectUsers = 1000

// PublishDirect stores and counts a notification for each of users (each
// once, however often it is named), from no one and on no topic, as one
// two-phase commit like Publish's, then delivers it live. Ids that are no
// user's are refused (UnknownUsers, naming them) before anything is
// written.
func (c *Coordinator) PublishDirect(ctx context.Context, users []int64, msg notification.Message) (Result, error) {
	if err := msg.Check(); err != nil {
		return Result{}, &Refusal{Invalid, fn.AsError(err).Message}
	}
	if len(users) == 0 || len(users) > MaxDirectUsers {
		return Result{}, &Refusal{Invalid, fmt.Sprintf("user_ids must name 1 to %d users", MaxDirectUsers)}
	}
	for _, id := range users {
		if id <= 0 {
			return Result{}, &Refusal{Invalid, "user_ids must be positive integers"}
		}
	}
	rec := newRecord(notification.Draft{Message: msg})
	n, unknown, err := store.FixUserRecipients(ctx, c.cfg.DB, rec.ID, users)
	if err != nil {
		// A set whose write landed after all is swept by recovery.
		return Result{}, fmt.Errorf("cannot fix the recipients of a direct notification: %w", err)
	}
	if len(unknown) > 0 {
		ids := make([]string, len(unknown))
		for i, id := range unknown {
			ids[i] = fmt.Sprint(id)
		}
		return Result{}, &Refusal{UnknownUsers, "no such users: " + strings.Join(ids, ", ")}
	}
	rec.Payload.Recipients = n
	return c.run(ctx, rec)
}
