package gateway

import "strings"

// The broker's gaps: while its pub/sub connection is failed, frames
// published on its channels may be lost. It marks them stale when it sees
// the failure and, once Redis confirms a stale channel's subscription
// again, tells whoever keeps the frames elsewhere (the gateway's user
// channel feeds, replay.go) to fill the gap.

// SetResumed makes the broker call resumed(topic), on a goroutine of its
// own, for each topic whose subscription Redis confirms again after the
// connection failed: frames published on it meanwhile may be lost, and
// whoever keeps them elsewhere can fill the gap from then on. Call it
// before the first Subscribe.
func (b *Broker) SetResumed(resumed func(topic string)) { b.resumed = resumed }

// lost marks every subscribed channel stale: the connection failed.
func (b *Broker) lost() {
	b.mu.Lock()
	defer b.mu.Unlock()
	for ch := range b.channels {
		b.stale[ch] = struct{}{}
	}
}

// resume reports ch resumed if it was stale; b.mu is held.
func (b *Broker) resume(ch string) {
	if _, ok := b.stale[ch]; !ok {
		return
	}
	delete(b.stale, ch)
	if topic, ok := strings.CutPrefix(ch, b.prefix); ok && topic != brokerControl && b.resumed != nil {
		go b.resumed(topic)
	}
}
