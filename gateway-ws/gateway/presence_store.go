package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/redis/go-redis/v9"

	"tidings/lib/redisx"
)

// presenceStore is the Redis side of presence (presence.go): who is present
// on which topic, from every replica, and the diffs that tell members.
//
// Keys, under the deployment's Redis prefix:
//
//	presence:{<tag>}:<topic>  a hash: field <node>|<phx_ref>, value <key>\n<meta JSON>
//	                          (presence:{<topic>} when the channel has no tag: one server)
//	{presence-nodes}:<node>   a set of the topics where <node> has entries
//	{presence-nodes}          a set of the nodes that have (or had) entries
//
// Every change of a topic's hash and the presence_diff frame telling its
// members are one atomic step (one script), so a diff is never lost to a
// crash between the two, and pub/sub delivers the diffs in the order the
// hash changed. A join's write and its state read are the same script.
//
// On a Redis Cluster a script may only touch keys, and publish on shard
// channels, of one slot: a topic's hash carries the hash tag of the
// topic's channel (<tag>, the broker's partition), and the node sets share
// the tag {presence-nodes}, so a topic's step and a node's sets are each
// on one slot, but not on the same one. They are then written in order:
// a topic joins the node's set before its entry is written, and leaves it
// after the node's last entry there is gone, so whatever a crash between
// the steps leaves, every entry is in its node's set and a sweep finds it
// (the set may name a topic with no entry left, which a sweep skips). On
// one server all of a batch still goes in one MULTI.
type presenceStore struct {
	rdb    redis.UniversalClient
	prefix string
	node   string // this replica's id
	// max is how many entries a topic's hash holds at most (0: no bound):
	// past it a join is not tracked, so a topic of many thousands of
	// members does not send every member a diff per join.
	max int
	// channel is the broker's Redis channel of a topic. On a cluster it
	// must carry a hash tag (the broker's partition), the tag of the
	// topic's hash.
	channel func(topic string) string
}

// presenceOp is one write of a replica's presence: an entry tracked (with
// its join diff) or untracked (with its leave diff, when it was there).
type presenceOp struct {
	topic string
	ref   string
	key   string // the presence key, the user id
	meta  []byte // the meta's JSON; track only
	track bool
	// last: the replica's last entry on topic went, so the topic leaves
	// the node's set.
	last bool
	// state asks for the topic's whole state after the write (a join;
	// track only).
	state bool
}

// topicKey is topic's hash, in the slot of its channel: with the channel's
// hash tag, or, when the channel has none (one server, where slots do not
// matter), the topic as the tag.
func (s *presenceStore) topicKey(topic string) string {
	if tag, ok := hashTag(s.channel(topic)); ok {
		return s.prefix + "presence:{" + tag + "}:" + topic
	}
	return s.prefix + "presence:{" + topic + "}"
}

func (s *presenceStore) nodeKey(node string) string { return s.nodesKey() + ":" + node }
func (s *presenceStore) nodesKey() string           { return s.prefix + "{presence-nodes}" }
func (s *presenceStore) field(ref string) string    { return s.node + "|" + ref }

// hashTag is the part of key that a Redis Cluster hashes to find its slot
// when there is one: what is between the first { and the next }, if not
// empty.
func hashTag(key string) (string, bool) {
	_, after, ok := strings.Cut(key, "{")
	if !ok {
		return "", false
	}
	tag, _, ok := strings.Cut(after, "}")
	return tag, ok && tag != ""
}

// presenceEntryValue is a hash value: the key, a newline, the meta.
func presenceEntryValue(key string, meta []byte) string { return key + "\n" + string(meta) }

// write runs ops in order and returns, for each op that asked for it, the
// topic's state after the write: hash field -> value. On one server it is
// one MULTI (one round trip whatever the batch); on a cluster three steps
// (see presenceStore): the node's sets gain the topics tracked, the
// topics' scripts run (a pipeline: go-redis sends each to its slot's
// master, in order), the node's set loses the topics whose last entry
// went.
func (s *presenceStore) write(ctx context.Context, ops []presenceOp) ([]map[string]string, error) {
	var tracked []any
	// gone are the topics whose last op in the batch is the node's last
	// leave: a topic left and tracked again in one batch stays in the set.
	gone := map[string]bool{}
	for _, op := range ops {
		if op.track {
			tracked = append(tracked, op.topic)
		}
		gone[op.topic] = !op.track && op.last
	}
	var untracked []any
	for topic, last := range gone {
		if last {
			untracked = append(untracked, topic)
		}
	}
	joinSets := func(pipe redis.Pipeliner) error {
		if len(tracked) > 0 {
			pipe.SAdd(ctx, s.nodesKey(), s.node)
			pipe.SAdd(ctx, s.nodeKey(s.node), tracked...)
		}
		return nil
	}
	leaveSets := func(pipe redis.Pipeliner) error {
		if len(untracked) > 0 {
			pipe.SRem(ctx, s.nodeKey(s.node), untracked...)
		}
		return nil
	}
	scripts := make([]*redis.Cmd, len(ops))
	runScripts := func(pipe redis.Pipeliner) error {
		for i, op := range ops {
			hash, channel := s.topicKey(op.topic), s.channel(op.topic)
			// Eval, not EvalSha: a pipeline cannot retry a NOSCRIPT.
			if op.track {
				frame, err := BroadcastFrame(op.topic, EventPresenceDiff, presenceDiff{
					Joins:  map[string]presenceMetas{op.key: {Metas: []rawMeta{op.meta}}},
					Leaves: map[string]presenceMetas{},
				})
				if err != nil {
					return err
				}
				state := "0"
				if op.state {
					state = "1"
				}
				scripts[i] = presenceTrackScript.Eval(ctx, pipe, []string{hash}, channel, s.field(op.ref),
					presenceEntryValue(op.key, op.meta), frame, s.max, redisx.PublishCommand(s.rdb), state)
			} else {
				topicJSON, _ := json.Marshal(op.topic) // a string always encodes
				presenceLeaveScript.Eval(ctx, pipe, []string{hash}, channel, topicJSON, redisx.PublishCommand(s.rdb), s.field(op.ref))
			}
		}
		return nil
	}
	var err error
	if !redisx.Sharded(s.rdb) {
		_, err = s.rdb.TxPipelined(ctx, func(pipe redis.Pipeliner) error {
			return errors.Join(joinSets(pipe), runScripts(pipe), leaveSets(pipe))
		})
	} else {
		err = s.inSteps(ctx, len(tracked) > 0, joinSets, runScripts, len(untracked) > 0, leaveSets)
	}
	if err != nil {
		return nil, fmt.Errorf("write %d presence changes: %w", len(ops), err)
	}
	out := make([]map[string]string, len(ops))
	for i, op := range ops {
		if op.state && scripts[i] != nil {
			if out[i], err = stateOf(scripts[i]); err != nil {
				return nil, fmt.Errorf("presence state of %s: %w", op.topic, err)
			}
		}
	}
	return out, nil
}

// inSteps runs a cluster's write in its three steps, each once the one
// before is answered: the node's sets in one MULTI (one slot) when topics
// are joined, the topics' scripts, then the sets again when topics are
// left.
func (s *presenceStore) inSteps(ctx context.Context, joins bool, joinSets, runScripts func(redis.Pipeliner) error, leaves bool, leaveSets func(redis.Pipeliner) error) error {
	if joins {
		if _, err := s.rdb.TxPipelined(ctx, joinSets); err != nil {
			return err
		}
	}
	if _, err := s.rdb.Pipelined(ctx, runScripts); err != nil {
		return err
	}
	if leaves {
		_, err := s.rdb.TxPipelined(ctx, leaveSets)
		return err
	}
	return nil
}

// stateOf reads the hash a track script returned (HGETALL's field, value
// list).
func stateOf(cmd *redis.Cmd) (map[string]string, error) {
	list, err := cmd.StringSlice()
	if err != nil {
		return nil, err
	}
	state := make(map[string]string, len(list)/2)
	for i := 0; i+1 < len(list); i += 2 {
		state[list[i]] = list[i+1]
	}
	return state, nil
}

// nodes returns the nodes that have entries (or had, and were not swept).
func (s *presenceStore) nodes(ctx context.Context) ([]string, error) {
	ids, err := s.rdb.SMembers(ctx, s.nodesKey()).Result()
	if err != nil {
		return nil, fmt.Errorf("list presence nodes: %w", err)
	}
	return ids, nil
}

// sweep removes every entry of node, which is dead, and tells the members
// of its topics; it returns how many entries it removed. Each topic is
// swept by a script of its own, in its slot, and only then are the topics
// taken out of the node's set and the node out of the set of nodes
// (one MULTI, their slot): a sweep cut short leaves them there for the
// next one. A node swept while still alive (cut off from Redis past its
// TTL) finds itself gone from the set of nodes at its next sweep and
// writes all its entries again (sweep in presence_sweep.go).
func (s *presenceStore) sweep(ctx context.Context, node string) (int, error) {
	topics, err := s.rdb.SMembers(ctx, s.nodeKey(node)).Result()
	if err != nil {
		return 0, fmt.Errorf("sweep presence of node %s: %w", node, err)
	}
	removed := make([]*redis.Cmd, len(topics))
	if _, err := s.rdb.Pipelined(ctx, func(pipe redis.Pipeliner) error {
		for i, topic := range topics {
			topicJSON, _ := json.Marshal(topic) // a string always encodes
			removed[i] = presenceSweepScript.Eval(ctx, pipe, []string{s.topicKey(topic)}, s.channel(topic), topicJSON, redisx.PublishCommand(s.rdb), node)
		}
		return nil
	}); err != nil {
		return 0, fmt.Errorf("sweep presence of node %s: %w", node, err)
	}
	n := 0
	for _, cmd := range removed {
		k, _ := cmd.Int()
		n += k
	}
	swept := make([]any, len(topics))
	for i, topic := range topics {
		swept[i] = topic
	}
	if _, err := s.rdb.TxPipelined(ctx, func(pipe redis.Pipeliner) error {
		if len(swept) > 0 {
			pipe.SRem(ctx, s.nodeKey(node), swept...)
		}
		pipe.SRem(ctx, s.nodesKey(), node)
		return nil
	}); err != nil {
		return n, fmt.Errorf("forget presence node %s: %w", node, err)
	}
	return n, nil
}

// entryKey splits a hash value into the presence key and the meta.
func entryKey(value string) (key string, meta []byte, ok bool) {
	key, m, ok := strings.Cut(value, "\n")
	return key, []byte(m), ok
}
