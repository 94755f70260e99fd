package gateway

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	dto "github.com/prometheus/client_model/go"

	"tidings/lib/testenv"
)

// waitDropped waits (bounded) until the gateway has counted want frames
// dropped by its inbound rate limit, and fails if it counts another number.
func waitDropped(t *testing.T, g *testGateway, want int) {
	t.Helper()
	got := 0
	for range 200 {
		var m dto.Metric
		if err := g.srv.metrics.MessagesDropped.Write(&m); err != nil {
			t.Fatal(err)
		}
		if got = int(m.GetCounter().GetValue()); got >= want {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if got != want {
		t.Fatalf("tidings_gateway_messages_dropped_total = %d, want %d", got, want)
	}
}

// TestFloodOfFramesGetsBoundedRepliesAndTheSocketStays sends 1,000
// heartbeats in one burst at a gateway with the production limits (burst
// 100, 50 frames a second, a send queue of 256). The replies must stay
// well within the send queue (at most one "rate limited" reply a second;
// the rest of the flood is dropped and counted), and the socket must stay
// open: once the client slows down, its heartbeats are answered again.
// Before, every refused frame got a reply, the replies filled the queue
// and the socket was dropped without a close frame (1006).
func TestFloodOfFramesGetsBoundedRepliesAndTheSocketStays(t *testing.T) {
	const flood = 1000
	cfg := testConfig(testenv.NewRedis(t), testenv.AdminURL())
	cfg.InboundBurst, cfg.InboundRate, cfg.SendQueue = 100, 50, 256
	g := startGateway(t, cfg)
	c := dial(t, g, 1)

	type frame struct {
		ref    string
		status string
		reason string
		err    error
	}
	frames := make(chan frame, 2*flood)
	go func() {
		defer close(frames)
		for {
			_ = c.ws.SetReadDeadline(time.Now().Add(30 * time.Second))
			_, data, err := c.ws.ReadMessage()
			if err != nil {
				frames <- frame{err: err}
				return
			}
			m, err := Decode(data)
			if err != nil {
				frames <- frame{err: fmt.Errorf("undecodable frame %s: %w", data, err)}
				return
			}
			var r struct {
				Status   string `json:"status"`
				Response struct {
					Reason     string `json:"reason"`
					RetryAfter int    `json:"retry_after"`
				} `json:"response"`
			}
			_ = json.Unmarshal(m.Payload, &r)
			var ref string
			_ = json.Unmarshal(m.Ref, &ref)
			if r.Status == StatusError && r.Response.Reason == ReasonRateLimited && r.Response.RetryAfter < 1 {
				frames <- frame{err: fmt.Errorf("rate limited reply without a retry_after: %s", data)}
				return
			}
			frames <- frame{ref: ref, status: r.Status, reason: r.Response.Reason}
		}
	}()

	for i := range flood {
		c.send(nil, fmt.Sprint(i), TopicPhoenix, EventHeartbeat, map[string]any{})
	}
	// Then probe at a client's pace until a heartbeat is answered ok.
	ok, limited, probes, probeReplies := 0, 0, 0, 0
	answered := false
	for !answered && probes < 30 {
		time.Sleep(200 * time.Millisecond)
		probes++
		probe := fmt.Sprintf("probe-%d", probes)
		c.send(nil, probe, TopicPhoenix, EventHeartbeat, map[string]any{})
	drain:
		for {
			select {
			case f, open := <-frames:
				if !open {
					t.Fatal("reader stopped")
				}
				var ce *websocket.CloseError
				switch {
				case errors.As(f.err, &ce):
					t.Fatalf("the gateway closed the flooding socket with %d %q after %d ok and %d rate limited replies; want it to stay", ce.Code, ce.Text, ok, limited)
				case f.err != nil:
					t.Fatalf("the flooding socket ended without a close frame after %d ok and %d rate limited replies: %v", ok, limited, f.err)
				case strings.HasPrefix(f.ref, "probe-"):
					probeReplies++
					if f.ref == probe && f.status == StatusOK {
						answered = true
						break drain
					}
				case f.status == StatusOK:
					ok++
				case f.reason == ReasonRateLimited:
					limited++
				default:
					t.Fatalf("unexpected reply %+v", f)
				}
			case <-time.After(2 * time.Second):
				break drain // this probe was dropped; try again
			}
		}
	}
	if !answered {
		t.Fatalf("no heartbeat answered ok in %d probes after the flood", probes)
	}
	dropped := flood - ok - limited
	t.Logf("%d frames in a burst: %d ok, %d rate limited, %d dropped; then %d probes, %d answered, the last ok",
		flood, ok, limited, dropped, probes, probeReplies)
	if ok < cfg.InboundBurst || limited < 1 || ok+limited >= cfg.SendQueue {
		t.Errorf("flood replies: %d ok and %d rate limited; want at least the burst of %d ok, at least one rate limited, and fewer replies than the send queue (%d)",
			ok, limited, cfg.InboundBurst, cfg.SendQueue)
	}
	waitDropped(t, g, dropped+probes-probeReplies)
}
