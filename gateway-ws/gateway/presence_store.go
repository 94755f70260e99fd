package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/redis/go-redis/v9"
)

// presenceStore is the Redis side of presence (presence.go): who is present
// on which topic, from every replica, and the diffs that tell members.
//
// Keys, under the deployment's Redis prefix:
//
//	presence:{<topic>}    a hash: field <node>|<phx_ref>, value <key>\n<meta JSON>
//	presence-node:<node>  a set of the topics where <node> has entries
//	presence-nodes        a set of the nodes that have (or had) entries
//
// Every change of a topic's hash and the presence_diff frame telling its
// members are one atomic step (MULTI, or one script), so a diff is never
// lost to a crash between the two, and pub/sub delivers the diffs in the
// order the hash changed. A join's write and its state read go in the same
// MULTI: one round trip whatever the topic's size.
type presenceStore struct {
	rdb    redis.UniversalClient
	prefix string
	node   string // this replica's id
	// max is how many entries a topic's hash holds at most (0: no bound):
	// past it a join is not tracked, so a topic of many thousands of
	// members does not send every member a diff per join.
	max int
	// channel is the broker's Redis channel of a topic.
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
	// state asks for the topic's whole state after the write (a join).
	state bool
}

func (s *presenceStore) topicKey(topic string) string { return s.prefix + "presence:{" + topic + "}" }
func (s *presenceStore) nodeKey(node string) string   { return s.prefix + "presence-node:" + node }
func (s *presenceStore) nodesKey() string             { return s.prefix + "presence-nodes" }
func (s *presenceStore) field(ref string) string      { return s.node + "|" + ref }

// presenceEntryValue is a hash value: the key, a newline, the meta.
func presenceEntryValue(key string, meta []byte) string { return key + "\n" + string(meta) }

// presenceLua is what the scripts share: leave removes fields of a topic's
// hash and, when any was there, publishes one presence_diff frame with
// their leaves, built from the stored metas as they are (no re-encoding).
const presenceLua = `
local function leave(hash, channel, topicJSON, fields)
  local keys, metas = {}, {}
  local n = 0
  for _, f in ipairs(fields) do
    local v = redis.call('HGET', hash, f)
    if v then
      redis.call('HDEL', hash, f)
      local key, meta = string.match(v, '^([^\n]*)\n(.*)$')
      if key then
        if metas[key] == nil then
          metas[key] = {}
          table.insert(keys, key)
        end
        table.insert(metas[key], meta)
        n = n + 1
      end
    end
  end
  if n > 0 then
    local parts = {}
    for _, key in ipairs(keys) do
      table.insert(parts, cjson.encode(key) .. ':{"metas":[' .. table.concat(metas[key], ',') .. ']}')
    end
    redis.call('PUBLISH', channel, '[null,null,' .. topicJSON .. ',"presence_diff",{"joins":{},"leaves":{' .. table.concat(parts, ',') .. '}}]')
  end
  return n
end
`

// presenceTrackScript adds an entry and publishes its join diff, unless
// the topic's hash is full. KEYS[1] the topic's hash; ARGV[1] its channel,
// ARGV[2] the field, ARGV[3] the value, ARGV[4] the diff frame, ARGV[5] the
// most entries the hash may hold (0: no bound).
var presenceTrackScript = redis.NewScript(`
local max = tonumber(ARGV[5])
if max > 0 and redis.call('HLEN', KEYS[1]) >= max and redis.call('HEXISTS', KEYS[1], ARGV[2]) == 0 then
  return 0
end
redis.call('HSET', KEYS[1], ARGV[2], ARGV[3])
redis.call('PUBLISH', ARGV[1], ARGV[4])
return 1
`)

// presenceLeaveScript: KEYS[1] the topic's hash; ARGV[1] its channel,
// ARGV[2] the topic as a JSON string, ARGV[3...] the fields to remove.
var presenceLeaveScript = redis.NewScript(presenceLua + `
local fields = {}
for i = 3, #ARGV do table.insert(fields, ARGV[i]) end
return leave(KEYS[1], ARGV[1], ARGV[2], fields)
`)

// presenceSweepScript removes every entry of a dead node, telling each
// topic's members, and forgets the node, in one step: replicas that sweep
// the same node at once remove (and announce) each entry once.
// KEYS[1] the node's topic set, KEYS[2] the set of nodes; ARGV[1] the node,
// ARGV[2] the prefix of topic hashes, ARGV[3] the prefix of channels.
var presenceSweepScript = redis.NewScript(presenceLua + `
local mine = ARGV[1] .. '|'
local removed = 0
for _, topic in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local hash = ARGV[2] .. topic .. '}'
  local fields = {}
  for _, f in ipairs(redis.call('HKEYS', hash)) do
    if string.sub(f, 1, #mine) == mine and not string.find(f, '|', #mine + 1, true) then
      table.insert(fields, f)
    end
  end
  removed = removed + leave(hash, ARGV[3] .. topic, cjson.encode(topic), fields)
end
redis.call('DEL', KEYS[1])
redis.call('SREM', KEYS[2], ARGV[1])
return removed
`)

// write runs ops in order in one MULTI (one round trip) and returns, for
// each op that asked for it, the topic's state after the write: hash
// field -> value.
func (s *presenceStore) write(ctx context.Context, ops []presenceOp) ([]map[string]string, error) {
	states := make([]*redis.MapStringStringCmd, len(ops))
	_, err := s.rdb.TxPipelined(ctx, func(pipe redis.Pipeliner) error {
		for i, op := range ops {
			hash, channel := s.topicKey(op.topic), s.channel(op.topic)
			if op.track {
				frame, err := BroadcastFrame(op.topic, EventPresenceDiff, presenceDiff{
					Joins:  map[string]presenceMetas{op.key: {Metas: []rawMeta{op.meta}}},
					Leaves: map[string]presenceMetas{},
				})
				if err != nil {
					return err
				}
				pipe.SAdd(ctx, s.nodesKey(), s.node)
				pipe.SAdd(ctx, s.nodeKey(s.node), op.topic)
				// Eval, not EvalSha: a pipeline cannot retry a NOSCRIPT.
				presenceTrackScript.Eval(ctx, pipe, []string{hash}, channel, s.field(op.ref), presenceEntryValue(op.key, op.meta), frame, s.max)
			} else {
				topicJSON, _ := json.Marshal(op.topic) // a string always encodes
				// Eval, not EvalSha: a pipeline cannot retry a NOSCRIPT.
				presenceLeaveScript.Eval(ctx, pipe, []string{hash}, channel, topicJSON, s.field(op.ref))
				if op.last {
					pipe.SRem(ctx, s.nodeKey(s.node), op.topic)
				}
			}
			if op.state {
				states[i] = pipe.HGetAll(ctx, hash)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("write %d presence changes: %w", len(ops), err)
	}
	out := make([]map[string]string, len(ops))
	for i, cmd := range states {
		if cmd != nil {
			out[i] = cmd.Val()
		}
	}
	return out, nil
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
// of its topics; it returns how many entries it removed.
func (s *presenceStore) sweep(ctx context.Context, node string) (int, error) {
	n, err := presenceSweepScript.Run(ctx, s.rdb, []string{s.nodeKey(node), s.nodesKey()},
		node, s.prefix+"presence:{", s.channel("")).Int()
	if err != nil {
		return 0, fmt.Errorf("sweep presence of node %s: %w", node, err)
	}
	return n, nil
}

// entryKey splits a hash value into the presence key and the meta.
func entryKey(value string) (key string, meta []byte, ok bool) {
	key, m, ok := strings.Cut(value, "\n")
	return key, []byte(m), ok
}
