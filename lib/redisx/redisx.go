// Package redisx is what tidings does differently on one Redis server and
// on a Redis Cluster, written once: which pub/sub commands carry a
// channel, and how a write is made to survive a failover.
//
// On a cluster, pub/sub is sharded (SPUBLISH, SSUBSCRIBE; Redis >= 7): a
// channel lives on the shard that owns its slot, so a publish travels to
// that shard's nodes only instead of being broadcast over the cluster bus
// to every node. One SSUBSCRIBE may only name channels of one slot, so
// channels subscribed together must share a hash tag ({...}).
package redisx

import (
	"context"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// Sharded says whether rdb is a Redis Cluster client, whose channels are
// sharded.
func Sharded(rdb redis.UniversalClient) bool {
	_, ok := rdb.(*redis.ClusterClient)
	return ok
}

// Publish publishes msg on channel: SPUBLISH on a cluster, PUBLISH on one
// server.
func Publish(ctx context.Context, rdb redis.UniversalClient, channel string, msg any) *redis.IntCmd {
	if Sharded(rdb) {
		return rdb.SPublish(ctx, channel, msg)
	}
	return rdb.Publish(ctx, channel, msg)
}

// PublishCommand is the command Publish sends, for a Lua script that
// publishes itself (on a cluster, the channel shares the script's slot).
func PublishCommand(rdb redis.UniversalClient) string {
	if Sharded(rdb) {
		return "SPUBLISH"
	}
	return "PUBLISH"
}

// PublishIn queues the same publish in a pipeline of rdb's.
func PublishIn(ctx context.Context, rdb redis.UniversalClient, p redis.Pipeliner, channel string, msg any) {
	if Sharded(rdb) {
		p.SPublish(ctx, channel, msg)
		return
	}
	p.Publish(ctx, channel, msg)
}

// Subscribe subscribes to channels, which on a cluster must all hash to
// one slot (one hash tag): SSUBSCRIBE on a cluster, SUBSCRIBE on one
// server. go-redis resubscribes them after a lost connection.
func Subscribe(ctx context.Context, rdb redis.UniversalClient, channels ...string) *redis.PubSub {
	if Sharded(rdb) {
		return rdb.SSubscribe(ctx, channels...)
	}
	return rdb.Subscribe(ctx, channels...)
}

// AddChannels subscribes ps, from Subscribe, to more channels (of the same
// slot on a cluster).
func AddChannels(ctx context.Context, rdb redis.UniversalClient, ps *redis.PubSub, channels ...string) error {
	if Sharded(rdb) {
		return ps.SSubscribe(ctx, channels...)
	}
	return ps.Subscribe(ctx, channels...)
}

// RemoveChannels unsubscribes ps from channels.
func RemoveChannels(ctx context.Context, rdb redis.UniversalClient, ps *redis.PubSub, channels ...string) error {
	if Sharded(rdb) {
		return ps.SUnsubscribe(ctx, channels...)
	}
	return ps.Unsubscribe(ctx, channels...)
}

// Subscribers counts the subscribers of channel: PUBSUB NUMSUB on one
// server, PUBSUB SHARDNUMSUB on the master of the channel's slot (where its
// subscribers are connected) on a cluster.
func Subscribers(ctx context.Context, rdb redis.UniversalClient, channel string) (int64, error) {
	numSub := rdb.PubSubNumSub
	if cluster, ok := rdb.(*redis.ClusterClient); ok {
		master, err := cluster.MasterForKey(ctx, channel)
		if err != nil {
			return 0, err
		}
		numSub = master.PubSubShardNumSub
	}
	n, err := numSub(ctx, channel).Result()
	return n[channel], err
}

// Relearn has a cluster client read the cluster's layout again, in the
// background, so that its next connection to a slot goes to the slot's
// master now: after a pub/sub connection failed or was dropped by a master
// whose slot moved (a subscription never gets the MOVED answer that makes
// go-redis relearn by itself; commands are covered by config's hook). One
// server has nothing to learn.
func Relearn(ctx context.Context, rdb redis.UniversalClient) {
	if cluster, ok := rdb.(*redis.ClusterClient); ok {
		cluster.ReloadState(ctx)
	}
}

// ReplicaWait bounds how long a Replicated write waits for a replica.
const ReplicaWait = time.Second

// Replicated runs fn's commands, all on keys of key's slot, as one
// MULTI/EXEC transaction and, on a cluster, then waits up to ReplicaWait
// for one replica of the slot's master to have them (WAIT 1): replication
// is asynchronous, and a master killed right after answering would
// otherwise take the write with it when its replica is promoted. A shard
// without a connected replica (one whose replica has just been promoted,
// until a new one joins) is not waited for, and a replica that does not
// answer within ReplicaWait is not waited for longer: the write stands on
// the master alone then, as it does on one server. On one server it is a
// plain transaction, made durable by the server's append-only file.
func Replicated(ctx context.Context, rdb redis.UniversalClient, key string, fn func(redis.Pipeliner) error) ([]redis.Cmder, error) {
	cluster, ok := rdb.(*redis.ClusterClient)
	if !ok {
		return rdb.TxPipelined(ctx, fn)
	}
	master, err := cluster.MasterForKey(ctx, key)
	if err != nil {
		return nil, err
	}
	conn := master.Conn()
	defer conn.Close()
	var role *redis.Cmd
	cmds, err := conn.TxPipelined(ctx, func(p redis.Pipeliner) error {
		if err := fn(p); err != nil {
			return err
		}
		// In the same transaction: the replicas connected when the write
		// was made, so a shard without one is not waited for (WAIT would
		// block for its whole timeout).
		role = p.Do(ctx, "ROLE")
		return nil
	})
	if err != nil {
		// The write went to a node straight (MasterForKey), past the
		// cluster client's own relearning: a slot that moved or a master
		// that died makes it learn the new layout here, so the caller's
		// retry goes to the slot's master now.
		cluster.ReloadState(ctx)
		return cmds, err
	}
	cmds = cmds[:len(cmds)-1]
	if !hasReplica(role) {
		return cmds, nil
	}
	if err := conn.Do(ctx, "WAIT", 1, ReplicaWait.Milliseconds()).Err(); err != nil {
		cluster.ReloadState(ctx)
		return cmds, fmt.Errorf("wait for a replica: %w", err)
	}
	return cmds, nil
}

// hasReplica reads ROLE's answer on a master: ["master", offset,
// [[host, port, offset], ...]] lists its connected replicas.
func hasReplica(role *redis.Cmd) bool {
	v, err := role.Slice()
	if err != nil || len(v) < 3 {
		return false
	}
	replicas, _ := v[2].([]any)
	return len(replicas) > 0
}
