package cache_test

import (
	"context"
	"fmt"

	"tidings/lib/cache"
)

// A function caches a topic's owner: the first read loads it from the
// database, the next ones are answered by the cache, and a change to the
// topic deletes the entry everywhere. A real process starts from
// cache.DefaultConfig(), which its configuration (CACHE_STORE, ...) may
// change, and passes a Redis client.
func ExampleTyped() {
	c, err := cache.New(cache.Config{Store: cache.Memory}, nil)
	if err != nil {
		panic(err)
	}
	defer c.Close()
	owners := cache.Of[int64](c, "topic-owner")

	ctx := context.Background()
	loadOwner := func(ctx context.Context) (int64, error) {
		fmt.Println("SELECT owner_id FROM topics WHERE id = 42")
		return 7, nil
	}
	for range 2 {
		owner, err := owners.GetOrLoad(ctx, "42", 0, loadOwner)
		fmt.Println(owner, err)
	}
	_ = owners.Delete(ctx, "42") // after UPDATE topics ... WHERE id = 42
	owner, _ := owners.GetOrLoad(ctx, "42", 0, loadOwner)
	fmt.Println(owner)
	// Output:
	// SELECT owner_id FROM topics WHERE id = 42
	// 7 <nil>
	// 7 <nil>
	// SELECT owner_id FROM topics WHERE id = 42
	// 7
}
