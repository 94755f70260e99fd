package gateway

import "strings"

// The broker's gaps: while a lane's pub/sub connection is failed, frames
// published on its channels may be lost. The lane marks them stale when it
// sees the failure and, once Redis confirms a stale channel's subscription
// again, tells whoever keeps the frames elsewhere (the gateway's user
// channel feeds, replay.go) to fill the gap.

// SetResumed makes the broker call resumed(topic), on a goroutine of its
// own, for each topic whose subscription Redis confirms again after the
// connection failed: frames published on it meanwhile may be lost, and
// whoever keeps them elsewhere can fill the gap from then on. Call it
// before the first Subscribe.
func (b *Broker) SetResumed(resumed func(topic string)) { b.resumed = resumed }

// lost marks every channel of the lane stale: the connection failed. The
// UNSUBSCRIBEs sent on it will not be answered any more.
func (l *lane) lost() {
	l.mu.Lock()
	defer l.mu.Unlock()
	clear(l.leaving)
	for ch := range l.channels {
		l.stale[ch] = struct{}{}
	}
}

// resume reports ch's topic resumed if ch was stale; l.mu is held. The
// control channel and watched channels carry no topic.
func (l *lane) resume(ch string) {
	if _, ok := l.stale[ch]; !ok {
		return
	}
	delete(l.stale, ch)
	topic, ok := strings.CutPrefix(ch, l.prefix)
	if !ok || l.prefix == "" || topic == brokerControl || l.b.resumed == nil || l.b.watcher(ch) != nil {
		return
	}
	go l.b.resumed(topic)
}
