package cache

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// Typed stores values of one type, JSON-encoded, under a namespace of a
// Cache: Of[store.User](c, "user") keeps users under "user:<key>". A value
// must survive a JSON round trip (exported fields, no channels or funcs).
type Typed[V any] struct {
	c  *Cache
	ns string
}

// Of returns the typed view of c under namespace ns.
func Of[V any](c *Cache, ns string) *Typed[V] {
	return &Typed[V]{c: c, ns: ns}
}

// Key is the cache key of k in this namespace, as Cache's own methods take it.
func (t *Typed[V]) Key(k string) string { return t.ns + ":" + k }

// OnChange is Cache.OnChange for this namespace: f gets the key k (as
// Typed's methods take it) of every change heard in the namespace, and
// all set, with k empty, when any key may have changed.
func (t *Typed[V]) OnChange(f func(k string, all bool)) bool {
	return t.c.OnChange(func(keys []string) {
		if keys == nil {
			f("", true)
			return
		}
		for _, key := range keys {
			if k, ok := strings.CutPrefix(key, t.ns+":"); ok {
				f(k, false)
			}
		}
	})
}

// Get returns the value under k and whether it was found; see Cache.Get.
func (t *Typed[V]) Get(ctx context.Context, k string) (V, bool, error) {
	var v V
	b, ok, err := t.c.get(ctx, t.Key(k))
	if !ok || err != nil {
		return v, false, err
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return v, false, fmt.Errorf("cache: decode %s: %w", t.Key(k), err)
	}
	return v, true, nil
}

// Set stores v under k for ttl; see Cache.Set.
func (t *Typed[V]) Set(ctx context.Context, k string, v V, ttl time.Duration) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("cache: encode %s: %w", t.Key(k), err)
	}
	return t.c.Set(ctx, t.Key(k), b, ttl)
}

// Delete removes the keys ks of this namespace; see Cache.Delete.
func (t *Typed[V]) Delete(ctx context.Context, ks ...string) error {
	keys := make([]string, len(ks))
	for i, k := range ks {
		keys[i] = t.Key(k)
	}
	return t.c.Delete(ctx, keys...)
}

// GetOrLoad returns the value under k, or loads, stores and returns it; see
// Cache.GetOrLoad. A cached value that no longer decodes (the type changed
// between versions) is loaded again rather than failing the read.
func (t *Typed[V]) GetOrLoad(ctx context.Context, k string, ttl time.Duration, load func(ctx context.Context) (V, error)) (V, error) {
	var v V
	b, err := t.c.getOrLoad(ctx, t.Key(k), ttl, func(ctx context.Context) ([]byte, error) {
		return t.encodeLoad(ctx, k, load)
	})
	if err != nil {
		return v, err
	}
	if err := json.Unmarshal(b, &v); err == nil {
		return v, nil
	}
	b, err = t.encodeLoad(ctx, k, load)
	if err != nil {
		return v, err
	}
	if err := t.c.Set(ctx, t.Key(k), b, ttl); err != nil {
		t.c.log.Debug("cache: reloaded value not stored", "key", t.Key(k), "err", err)
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return v, fmt.Errorf("cache: decode %s: %w", t.Key(k), err)
	}
	return v, nil
}

func (t *Typed[V]) encodeLoad(ctx context.Context, k string, load func(ctx context.Context) (V, error)) ([]byte, error) {
	v, err := load(ctx)
	if err != nil {
		return nil, err
	}
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("cache: encode %s: %w", t.Key(k), err)
	}
	return b, nil
}
