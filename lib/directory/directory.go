// Package directory answers the lookups every replica makes all the time:
// a user, a topic's owner, a topic's subscribers. They go through the
// shared cache (lib/cache) and fall back to PostgreSQL, so replicas share
// what they know without hammering the database, and a Redis outage only
// costs database reads.
package directory

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"tidings/lib/cache"
	"tidings/lib/logging"
	"tidings/lib/store"
)

// How long entries live. Users and topic owners never change once
// written; subscriber lists change, are invalidated on every change, and
// live briefly in case an invalidation is lost.
const (
	StableTTL      = 10 * time.Minute
	SubscribersTTL = 30 * time.Second
)

// Directory reads through the cache.
type Directory struct {
	db          store.Querier
	log         *slog.Logger
	users       *cache.Typed[store.User]
	owners      *cache.Typed[int64]
	subscribers *cache.Typed[[]int64]
	subscribed  *cache.Typed[bool]
}

// New returns a Directory over db, cached in c (nil: no cache, every read
// goes to the database).
func New(db store.Querier, c *cache.Cache, log *slog.Logger) *Directory {
	d := &Directory{db: db, log: logging.Or(log)}
	if c != nil {
		d.users = cache.Of[store.User](c, "user")
		d.owners = cache.Of[int64](c, "topic-owner")
		d.subscribers = cache.Of[[]int64](c, "subscribers")
		d.subscribed = cache.Of[bool](c, "subscribed")
	}
	return d
}

// through reads key from t, loading it with load on a miss; without a
// cache it just loads.
func through[V any](ctx context.Context, t *cache.Typed[V], key string, ttl time.Duration, load func(ctx context.Context) (V, error)) (V, error) {
	if t == nil {
		return load(ctx)
	}
	return t.GetOrLoad(ctx, key, ttl, load)
}

// User returns a user (without the password hash); store.ErrNotFound when
// there is none.
func (d *Directory) User(ctx context.Context, id int64) (store.User, error) {
	return through(ctx, d.users, strconv.FormatInt(id, 10), StableTTL, func(ctx context.Context) (store.User, error) {
		return store.UserByID(ctx, d.db, id)
	})
}

// TopicOwner returns a topic's owner; store.ErrNotFound when there is no
// such topic.
func (d *Directory) TopicOwner(ctx context.Context, topicID int64) (int64, error) {
	return through(ctx, d.owners, strconv.FormatInt(topicID, 10), StableTTL, func(ctx context.Context) (int64, error) {
		return store.TopicOwner(ctx, d.db, topicID)
	})
}

// Subscribers returns the ids of a topic's subscribers, sorted.
func (d *Directory) Subscribers(ctx context.Context, topicID int64) ([]int64, error) {
	return through(ctx, d.subscribers, strconv.FormatInt(topicID, 10), SubscribersTTL, func(ctx context.Context) ([]int64, error) {
		ids, err := store.Subscribers(ctx, d.db, topicID)
		if ids == nil {
			ids = []int64{} // cached as an empty list, not as "nothing"
		}
		return ids, err
	})
}

// IsSubscriber reports whether userID subscribes to topicID. It is its own
// small entry, not a search of the subscriber list, so that a join to a
// topic of many subscribers does not decode them all.
func (d *Directory) IsSubscriber(ctx context.Context, topicID, userID int64) (bool, error) {
	ok, err := through(ctx, d.subscribed, membershipKey(topicID, userID), SubscribersTTL, func(ctx context.Context) (bool, error) {
		return store.IsSubscriber(ctx, d.db, topicID, userID)
	})
	if err != nil {
		return false, fmt.Errorf("subscription of user %d to topic %d: %w", userID, topicID, err)
	}
	return ok, nil
}

func membershipKey(topicID, userID int64) string {
	return strconv.FormatInt(topicID, 10) + ":" + strconv.FormatInt(userID, 10)
}

// SubscriptionChanged drops what the caches hold about userID's
// subscription to topicID (the topic's subscriber list and the membership),
// on every replica; call it after changing that subscription. The change is
// already stored, so a failure only means replicas may read the old answer
// until it expires (SubscribersTTL); it is logged, not returned.
func (d *Directory) SubscriptionChanged(ctx context.Context, topicID, userID int64) {
	if d.subscribers == nil {
		return
	}
	err := errors.Join(
		d.subscribers.Delete(ctx, strconv.FormatInt(topicID, 10)),
		d.subscribed.Delete(ctx, membershipKey(topicID, userID)))
	if err != nil {
		d.log.Warn("subscription not invalidated; it expires by itself", "topic", topicID, "user", userID, "ttl", SubscribersTTL, "err", err)
	}
}

// SubscriptionChange is a change of a subscription reported with
// SubscriptionChanged, as a watcher hears it. All means that changes may
// have been missed: any subscription may have changed.
type SubscriptionChange struct {
	TopicID, UserID int64
	All             bool
}

// WatchSubscriptions calls f for every subscription change any process
// reports with SubscriptionChanged, once this process's cache has dropped
// what it held about it, so a read made after f is called sees the change.
// f runs on the cache's listener and must not block. It reports false when
// the cache cannot hear other processes (no cache, or not the near store):
// then f is never called.
func (d *Directory) WatchSubscriptions(f func(SubscriptionChange)) bool {
	if d.subscribed == nil {
		return false
	}
	return d.subscribed.OnChange(func(k string, all bool) {
		if all {
			f(SubscriptionChange{All: true})
			return
		}
		topicID, userID, ok := parseMembershipKey(k)
		if !ok {
			d.log.Warn("unreadable subscription key in an invalidation", "key", k)
			f(SubscriptionChange{All: true})
			return
		}
		f(SubscriptionChange{TopicID: topicID, UserID: userID})
	})
}

func parseMembershipKey(k string) (topicID, userID int64, ok bool) {
	t, u, found := strings.Cut(k, ":")
	if !found {
		return 0, 0, false
	}
	topicID, err1 := strconv.ParseInt(t, 10, 64)
	userID, err2 := strconv.ParseInt(u, 10, 64)
	return topicID, userID, err1 == nil && err2 == nil
}
