package gateway

import "github.com/redis/go-redis/v9"

// The scripts of presenceStore (presence_store.go). Each touches one
// topic's hash, and publishes on that topic's channel, so that on a Redis
// Cluster it runs on one slot.

// presenceLua is what the scripts share: leave removes fields of a topic's
// hash and, when any was there, publishes (with the command cmd) one
// presence_diff frame with their leaves, built from the stored metas as
// they are (no re-encoding).
const presenceLua = `
local function leave(hash, cmd, channel, topicJSON, fields)
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
    redis.call(cmd, channel, '[null,null,' .. topicJSON .. ',"presence_diff",{"joins":{},"leaves":{' .. table.concat(parts, ',') .. '}}]')
  end
  return n
end
`

// presenceTrackScript adds an entry and publishes its join diff, unless
// the topic's hash is full, and returns the hash (HGETALL) when asked,
// else 1. KEYS[1] the topic's hash; ARGV[1] its channel, ARGV[2] the
// field, ARGV[3] the value, ARGV[4] the diff frame, ARGV[5] the most
// entries the hash may hold (0: no bound), ARGV[6] the publish command,
// ARGV[7] "1" to return the hash.
var presenceTrackScript = redis.NewScript(`
local max = tonumber(ARGV[5])
if max == 0 or redis.call('HLEN', KEYS[1]) < max or redis.call('HEXISTS', KEYS[1], ARGV[2]) == 1 then
  redis.call('HSET', KEYS[1], ARGV[2], ARGV[3])
  redis.call(ARGV[6], ARGV[1], ARGV[4])
end
if ARGV[7] == '1' then return redis.call('HGETALL', KEYS[1]) end
return 1
`)

// presenceLeaveScript: KEYS[1] the topic's hash; ARGV[1] its channel,
// ARGV[2] the topic as a JSON string, ARGV[3] the publish command,
// ARGV[4...] the fields to remove.
var presenceLeaveScript = redis.NewScript(presenceLua + `
local fields = {}
for i = 4, #ARGV do table.insert(fields, ARGV[i]) end
return leave(KEYS[1], ARGV[3], ARGV[1], ARGV[2], fields)
`)

// presenceSweepScript removes every entry of a dead node from one topic,
// telling its members, in one step: replicas that sweep the same node at
// once remove (and announce) each entry once. KEYS[1] the topic's hash;
// ARGV[1] its channel, ARGV[2] the topic as a JSON string, ARGV[3] the
// publish command, ARGV[4] the node.
var presenceSweepScript = redis.NewScript(presenceLua + `
local mine = ARGV[4] .. '|'
local fields = {}
for _, f in ipairs(redis.call('HKEYS', KEYS[1])) do
  if string.sub(f, 1, #mine) == mine and not string.find(f, '|', #mine + 1, true) then
    table.insert(fields, f)
  end
end
return leave(KEYS[1], ARGV[3], ARGV[1], ARGV[2], fields)
`)
