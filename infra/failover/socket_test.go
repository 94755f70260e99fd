package failover

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"

	"tidings/lib/notification"
)

// heartbeatEvery is how often a socket sends Phoenix's heartbeat, as
// phoenix.js does (its default is 30 s; sooner here, well inside the
// gateway's WS_IDLE_TIMEOUT whatever it is set to).
const heartbeatEvery = 5 * time.Second

// socket is a subscriber's WebSocket on one gateway, speaking Phoenix's
// V2 protocol as phoenix.js does: joined to user:<id>, where its
// notifications arrive, and to topic:<id>, and sending heartbeats.
type socket struct {
	user    int64
	gateway string

	ws      *websocket.Conn
	writeMu sync.Mutex
	refs    atomic.Int64
	stop    chan struct{} // closed by close: from then on a read error is ours
	done    chan struct{} // closed when the reader returns

	mu            sync.Mutex
	seen          map[int64]bool // notification ids pushed on user:<id>
	closedByPeer  error          // why the server ended the socket, before close
	channelsEnded []string       // phx_close or phx_error the server sent a joined channel
}

// dial opens a socket on gateway as user and joins user:<id> and
// topic:<topic>, waiting for both replies (bounded by ctx).
func dial(ctx context.Context, gateway, token string, user, topic int64) (*socket, error) {
	url := fmt.Sprintf("ws://%s/socket/websocket?vsn=2.0.0&token=%s", gateway, token)
	ws, _, err := websocket.DefaultDialer.DialContext(ctx, url, nil)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", gateway, err)
	}
	s := &socket{user: user, gateway: gateway, ws: ws, stop: make(chan struct{}), done: make(chan struct{}), seen: map[int64]bool{}}
	joins := map[string]string{}
	for _, channel := range []string{fmt.Sprintf("user:%d", user), fmt.Sprintf("topic:%d", topic)} {
		ref := s.ref()
		joins[ref] = channel
		if err := s.send(ref, ref, channel, "phx_join", map[string]any{}); err != nil {
			ws.Close()
			return nil, fmt.Errorf("join %s: %w", channel, err)
		}
	}
	if deadline, ok := ctx.Deadline(); ok {
		_ = ws.SetReadDeadline(deadline)
	}
	for len(joins) > 0 { // the replies may come after presence frames
		f, err := s.read()
		if err != nil {
			ws.Close()
			return nil, fmt.Errorf("join %v on %s: %w", joins, gateway, err)
		}
		channel, ok := joins[f.ref]
		if !ok || f.event != "phx_reply" {
			continue
		}
		var reply struct {
			Status   string          `json:"status"`
			Response json.RawMessage `json:"response"`
		}
		_ = json.Unmarshal(f.payload, &reply)
		if reply.Status != "ok" {
			ws.Close()
			return nil, fmt.Errorf("join %s on %s: %s %s", channel, gateway, reply.Status, reply.Response)
		}
		delete(joins, f.ref)
	}
	_ = ws.SetReadDeadline(time.Time{})
	go s.readLoop()
	go s.heartbeat()
	return s, nil
}

func (s *socket) ref() string { return strconv.FormatInt(s.refs.Add(1), 10) }

// send writes one V2 frame, [join_ref, ref, topic, event, payload].
func (s *socket) send(joinRef, ref, topic, event string, payload any) error {
	var jr any // null outside a channel, as for the heartbeat
	if joinRef != "" {
		jr = joinRef
	}
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	_ = s.ws.SetWriteDeadline(time.Now().Add(5 * time.Second))
	return s.ws.WriteJSON([]any{jr, ref, topic, event, payload})
}

type frame struct {
	joinRef, ref, topic, event string
	payload                    json.RawMessage
}

func (s *socket) read() (frame, error) {
	var raw [5]json.RawMessage
	if err := s.ws.ReadJSON(&raw); err != nil {
		return frame{}, err
	}
	var f frame
	_ = json.Unmarshal(raw[0], &f.joinRef)
	_ = json.Unmarshal(raw[1], &f.ref)
	_ = json.Unmarshal(raw[2], &f.topic)
	_ = json.Unmarshal(raw[3], &f.event)
	f.payload = raw[4]
	return f, nil
}

// readLoop records what the server pushes until the socket ends; an end
// before close is the server's (or the network's) doing.
func (s *socket) readLoop() {
	defer close(s.done)
	userChannel := fmt.Sprintf("user:%d", s.user)
	for {
		f, err := s.read()
		if err != nil {
			select {
			case <-s.stop:
			default:
				s.mu.Lock()
				s.closedByPeer = err
				s.mu.Unlock()
			}
			return
		}
		switch {
		case f.topic == userChannel && f.event == notification.EventName:
			var n notification.Event
			if json.Unmarshal(f.payload, &n) == nil {
				s.mu.Lock()
				s.seen[n.ID] = true
				s.mu.Unlock()
			}
		case f.event == "phx_close" || f.event == "phx_error":
			s.mu.Lock()
			s.channelsEnded = append(s.channelsEnded, f.event+" on "+f.topic)
			s.mu.Unlock()
		}
	}
}

func (s *socket) heartbeat() {
	tick := time.NewTicker(heartbeatEvery)
	defer tick.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-s.done:
			return
		case <-tick.C:
			_ = s.send("", s.ref(), "phoenix", "heartbeat", map[string]any{})
		}
	}
}

// saw reports whether the notification id reached the socket.
func (s *socket) saw(id int64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.seen[id]
}

// seenOf counts how many of ids reached the socket.
func (s *socket) seenOf(ids []int64) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, id := range ids {
		if s.seen[id] {
			n++
		}
	}
	return n
}

// ended is why the server ended the socket or one of its channels before
// close; nil while both stay.
func (s *socket) ended() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.closedByPeer != nil:
		return fmt.Errorf("socket closed: %w", s.closedByPeer)
	case len(s.channelsEnded) > 0:
		return fmt.Errorf("channels ended by the server: %v", s.channelsEnded)
	}
	return nil
}

// closedByServer reports whether the socket itself ended before close.
func (s *socket) closedByServer() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closedByPeer != nil
}

// close ends the socket from the client's side.
func (s *socket) close() {
	close(s.stop)
	s.writeMu.Lock()
	_ = s.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
	s.writeMu.Unlock()
	_ = s.ws.Close()
	<-s.done
}
