package functions_test

import (
	"encoding/json"
	"fmt"
	"testing"
)

// publish runs a whole publish on the topic by hand, as the coordinator
// does, and returns the notification's id.
func (p *participants) publish(tx string, topic, owner int64) any {
	p.t.Helper()
	n := p.fix(tx, topic)
	s, out := p.internal("notify-prepare", notifyBody(tx, topic, owner, n))
	if s != 200 {
		p.t.Fatalf("notify-prepare %s: %d %v", tx, s, out)
	}
	if s, out := p.internal("counter-prepare", counterBody(tx, n)); s != 200 {
		p.t.Fatalf("counter-prepare %s: %d %v", tx, s, out)
	}
	for _, f := range []string{"counter-commit", "notify-commit"} {
		if s, out := p.internal(f, fmt.Sprintf(`{"tx_id":%q}`, tx)); s != 200 {
			p.t.Fatalf("%s %s: %d %v", f, tx, s, out)
		}
	}
	return out["notification_id"]
}

// relay carries the ack outbox to the counter as gateway-ws's relay does,
// the counter's step twice (two replicas relaying the same acks), and
// returns the acks it carried.
func (p *participants) relay() []any {
	p.t.Helper()
	s, pending := p.internal("notify-acks", `{"done":[]}`)
	acks, _ := pending["acks"].([]any)
	if s != 200 {
		p.t.Fatalf("notify-acks: %d %v", s, pending)
	}
	if len(acks) == 0 {
		return nil
	}
	relayed, _ := json.Marshal(map[string]any{"acks": acks})
	for i := 0; i < 2; i++ {
		if s, out := p.internal("counter-ack", string(relayed)); s != 200 {
			p.t.Fatalf("counter-ack #%d: %d %v", i+1, s, out)
		}
	}
	done := make([]any, len(acks))
	for i, a := range acks {
		done[i] = a.(map[string]any)["id"]
	}
	body, _ := json.Marshal(map[string]any{"done": done})
	if s, out := p.internal("notify-acks", string(body)); s != 200 || len(out["acks"].([]any)) != 0 {
		p.t.Fatalf("notify-acks after the relay: %d %v, want none left", s, out)
	}
	return acks
}

// ack-all beside a single ack: the counter drops to 0 by exactly the
// deliveries each marked, the invariant holds, and a second ack-all
// changes nothing; the other subscriber's count is untouched.
func TestAckAllLeavesUnreadZeroCountedOnceAndTheInvariantHolding(t *testing.T) {
	p := newParticipants(t)
	owner, topic, _, tokens := p.world()
	var ids []any
	for i := 0; i < 3; i++ {
		ids = append(ids, p.publish(fmt.Sprintf("tx-%d", i), topic, owner))
	}
	if s, out := p.call("ack-notification", "POST", "", fmt.Sprintf(`{"notification_id":%v}`, ids[0]), "", tokens[0]); s != 202 {
		t.Fatalf("single ack: %d %v, want 202 (no relay runs)", s, out)
	}
	if s, out := p.call("ack-all", "POST", "", "{}", "", tokens[0]); s != 202 || out["unread"] != 0.0 || out["pending"] != true {
		t.Errorf("ack-all: %d %v, want 202 with unread 0 pending (no relay runs)", s, out)
	}
	if _, out := p.call("get-counter", "GET", "", "", "", tokens[0]); out["unread"] != 3.0 {
		t.Errorf("unread before the relay: %v, want 3 (the counter applies acks only when relayed)", out)
	}
	acks := p.relay()
	if got := fmt.Sprint(acks); len(acks) != 2 || !(acks[0].(map[string]any)["deliveries"] == 1.0 && acks[1].(map[string]any)["deliveries"] == 2.0) {
		t.Errorf("relayed %s, want the single ack (1 delivery) and the ack-all (the other 2)", got)
	}
	if _, out := p.call("get-counter", "GET", "", "", "", tokens[0]); out["unread"] != 0.0 {
		t.Errorf("unread after the relay: %v, want 0", out)
	}
	if _, out := p.call("get-counter", "GET", "", "", "", tokens[1]); out["unread"] != 3.0 {
		t.Errorf("the other subscriber's count: %v, want 3", out)
	}
	p.invariant()

	before := p.dbs.Snapshot(t)
	if s, out := p.call("ack-all", "POST", "", "{}", "", tokens[0]); s != 200 || out["unread"] != 0.0 || out["pending"] != nil {
		t.Errorf("second ack-all: %d %v, want 200 {unread: 0}", s, out)
	}
	if s, out := p.call("ack-notification", "POST", "", fmt.Sprintf(`{"notification_id":%v}`, ids[2]), "", tokens[0]); s != 200 || out["unread"] != 0.0 {
		t.Errorf("single ack of what ack-all marked: %d %v, want 200 {unread: 0}", s, out)
	}
	if after := p.dbs.Snapshot(t); after != before {
		t.Errorf("a second ack-all (or a repeated ack) changed the database")
	}
	if acks := p.relay(); len(acks) != 0 {
		t.Errorf("a second ack-all left acks to relay: %v", acks)
	}
	p.invariant()
}

// A relay from before ack-all sends acks without deliveries: counter-ack
// refuses them (they stay in the outbox) rather than guess 1.
func TestCounterAckRefusesAnAckWithoutDeliveries(t *testing.T) {
	p := newParticipants(t)
	_, _, subs, _ := p.world()
	before := p.dbs.Snapshot(t)
	for _, body := range []string{
		fmt.Sprintf(`{"acks":[{"id":1,"user_id":%d,"notification_id":1}]}`, subs[0]),
		fmt.Sprintf(`{"acks":[{"id":1,"user_id":%d,"notification_id":1,"deliveries":0}]}`, subs[0]),
	} {
		if s, out := p.internal("counter-ack", body); s != 400 {
			t.Errorf("counter-ack %s: %d %v, want 400", body, s, out)
		}
	}
	if after := p.dbs.Snapshot(t); after != before {
		t.Errorf("refused acks changed the database")
	}
}
