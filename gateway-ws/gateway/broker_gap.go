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
// whoever keeps them elsewhere can fill the gap from then on. On a
// cluster a watched channel that resumes is reported too, by its whole
// name (see resume). Call it before the first Subscribe.
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
// control channel carries no topic. A watched channel on a lane of its own
// (a cluster's) is reported by its whole name: what it carries for the
// topics (the users' batches) was lost while the topics' own lanes may
// have stayed up. On the one lane of a server, the topics' channels were
// lost with it and resume themselves.
func (l *lane) resume(ch string) {
	if _, ok := l.stale[ch]; !ok {
		return
	}
	delete(l.stale, ch)
	if l.b.resumed == nil {
		return
	}
	if l.prefix == "" {
		go l.b.resumed(ch)
		return
	}
	topic, ok := strings.CutPrefix(ch, l.prefix)
	if !ok || topic == brokerControl || l.b.watcher(ch) != nil {
		return
	}
	go l.b.resumed(topic)
}
