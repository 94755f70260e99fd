package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"tidings/lib/fn"
	"tidings/lib/store"
)

// Access answers the questions connects, joins and pushes ask about users
// and topics: the directory (lib/directory) answers them, through the
// shared cache.
type Access interface {
	// User returns a user, or store.ErrNotFound when there is none.
	User(ctx context.Context, id int64) (store.User, error)
	// TopicOwner returns the owner of topicID, or store.ErrNotFound.
	TopicOwner(ctx context.Context, topicID int64) (int64, error)
	// IsSubscriber reports whether userID subscribes to topicID.
	IsSubscriber(ctx context.Context, topicID, userID int64) (bool, error)
}

// Publisher carries out a `publish` push on topic:<id>: the two-phase
// commit of a notification, whose coordinator is the one that checks that
// userID owns the topic (a *Refused with ReasonUnauthorized if not). It
// returns the reply's response.
type Publisher interface {
	Publish(ctx context.Context, userID, topicID int64, payload json.RawMessage) (any, error)
}

// topicKind is what a topic name routes to, like a `channel "user:*"` line
// in a Phoenix socket.
type topicKind int

const (
	kindUnmatched topicKind = iota
	kindUser                // user:<id>
	kindTopic               // topic:<id>
)

// route splits a topic into its kind and id; id is 0 when the part after the
// colon is not a positive integer.
func route(topic string) (topicKind, int64) {
	prefix, rest, ok := strings.Cut(topic, ":")
	if !ok {
		return kindUnmatched, 0
	}
	var kind topicKind
	switch prefix {
	case "user":
		kind = kindUser
	case "topic":
		kind = kindTopic
	default:
		return kindUnmatched, 0
	}
	id, err := fn.ParseID("topic id", rest)
	if err != nil {
		return kind, 0
	}
	return kind, id
}

// Refused is a join or push the gateway turns down; Reason goes into the
// error reply. A Publisher returns it for refusals the client should see.
type Refused struct{ Reason string }

func (e *Refused) Error() string { return "refused: " + e.Reason }

// userGone reports whether userID is known not to exist (any more). A
// lookup that fails is no such answer: the token's signature has been
// checked, and user channels keep working through a PostgreSQL outage.
func userGone(ctx context.Context, access Access, userID int64, log *slog.Logger) bool {
	_, err := access.User(ctx, userID)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		log.Warn("user lookup failed; the token is trusted on its signature", "user", userID, "err", err)
	}
	return errors.Is(err, store.ErrNotFound)
}

// authorizeJoin decides whether userID may join topic: user:<id> only for
// that user, topic:<id> for its subscribers and its owner, and nothing for
// a user who no longer exists.
func authorizeJoin(ctx context.Context, access Access, userID int64, kind topicKind, id int64, log *slog.Logger) error {
	if id == 0 {
		return &Refused{ReasonInvalidTopic}
	}
	if userGone(ctx, access, userID, log) {
		return &Refused{ReasonUnauthorized}
	}
	switch kind {
	case kindUser:
		if id != userID {
			return &Refused{ReasonUnauthorized}
		}
		return nil
	case kindTopic:
		owner, err := access.TopicOwner(ctx, id)
		if errors.Is(err, store.ErrNotFound) {
			// The same answer as for someone else's topic: a stranger
			// learns nothing about which topics exist.
			return &Refused{ReasonUnauthorized}
		}
		if err != nil {
			return fmt.Errorf("owner of topic %d: %w", id, err)
		}
		if owner == userID {
			return nil
		}
		sub, err := access.IsSubscriber(ctx, id, userID)
		if err != nil {
			return err
		}
		if !sub {
			return &Refused{ReasonUnauthorized}
		}
		return nil
	}
	return &Refused{ReasonUnmatchedTopic}
}
