// Package gateway is tidings' WebSocket gateway: Phoenix Channels over
// WebSocket at /socket/websocket and long-poll at /socket/longpoll (the V2
// serializer, its binary pushes, and V1), fan-out across replicas through
// Redis pub/sub, and a pass-through of the public functions at
// /function/<name>.
//
// The pieces, a file or two each:
//   - config (Config), server (the Server and New), wire (building its
//     parts on the shared dependencies of lib/deps), lifecycle (Run, Serve,
//     graceful shutdown, the open sockets), routes (every HTTP route);
//   - socket (the checks of every socket: origin, version and token; the
//     upgrade), protocol (the V2 frame codec), serializer (V1 objects, V2
//     binary pushes, the choice by vsn), conn (one client socket, whatever
//     its transport: reader, bounded queue, close), websocket and longpoll
//     (the transports), channel (a socket's membership of one topic and its
//     states),
//     join (authorising a join), push (a joined channel's client events,
//     run in order on the channel's own goroutine, off the reader);
//   - hub (local topic membership), broker (Redis pub/sub fan-out across
//     replicas; broker_gap: which subscriptions may have missed frames),
//     broadcast (Server.Broadcast and POST /internal/broadcast);
//   - feed (a user channel's notifications, each id sent once) and replay
//     (a join with since, and the gap fill after a broker outage, read
//     from the persist participant through notify-since);
//   - presence (Phoenix Presence on topic:<id>: presence_state and
//     presence_diff across replicas), presence_store (its Redis keys and
//     scripts), presence_writer (one batching writer per replica),
//     presence_sweep (removing dead replicas' members);
//   - access (who may join what), revoke (ending memberships whose right is
//     gone), publish (the publish push and its HTTP twin, through the 2PC
//     coordinator), throttle (per-user quotas);
//   - proxy (function pass-through), jobs (the job API), health, status and
//     metrics (what /healthz, /api/status, the dashboard and /metrics show).
package gateway
