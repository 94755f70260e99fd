package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strconv"

	"github.com/realclientip/realclientip-go"

	"tidings/lib/ratelimit"
)

// newQuotaReply is the socket's answer to a publish past its quota, the
// same shape as the inbound rate limit's (RateLimited).
func newQuotaReply(e *ratelimit.Exceeded) RateLimited {
	return RateLimited{Reason: ReasonRateLimited, RetryAfter: e.Seconds()}
}

// quotaPublisher spends the publisher's quota before every publish, over
// HTTP and socket alike; past it, Publish returns *ratelimit.Exceeded.
type quotaPublisher struct {
	next    Publisher
	limiter *ratelimit.Limiter
	quota   ratelimit.Limit
}

// Publish implements Publisher.
func (p quotaPublisher) Publish(ctx context.Context, userID, topicID int64, payload json.RawMessage) (any, error) {
	if err := p.limiter.Take(ctx, p.quota, strconv.FormatInt(userID, 10)); err != nil {
		return nil, err
	}
	return p.next.Publish(ctx, userID, topicID, payload)
}

// clientAddress is who the pass-through tells functions the client is
// (X-Forwarded-For; login throttles per address on it): the peer of the
// connection, or, when the peer is one of the trusted proxies, the
// rightmost X-Forwarded-For entry that is not one. A client-sent
// X-Forwarded-For is otherwise ignored, so a client cannot pick its address.
type clientAddress struct {
	trusted []net.IPNet
	behind  realclientip.Strategy // nil: no trusted proxy
}

func newClientAddress(trustedProxies []string) (clientAddress, error) {
	if len(trustedProxies) == 0 {
		return clientAddress{}, nil
	}
	nets, err := realclientip.AddressesAndRangesToIPNets(trustedProxies...)
	if err != nil {
		return clientAddress{}, fmt.Errorf("GATEWAY_TRUSTED_PROXIES: %w", err)
	}
	behind, err := realclientip.NewRightmostTrustedRangeStrategy("X-Forwarded-For", nets)
	if err != nil {
		return clientAddress{}, fmt.Errorf("GATEWAY_TRUSTED_PROXIES: %w", err)
	}
	return clientAddress{trusted: nets, behind: behind}, nil
}

// of returns r's client address, or "" when the peer's is unparsable.
func (a clientAddress) of(r *http.Request) string {
	peer := realclientip.RemoteAddrStrategy{}.ClientIP(nil, r.RemoteAddr)
	if a.behind == nil || peer == "" || !a.isTrusted(peer) {
		return peer
	}
	if ip := a.behind.ClientIP(r.Header, r.RemoteAddr); ip != "" {
		return ip
	}
	return peer
}

func (a clientAddress) isTrusted(addr string) bool {
	ip := net.ParseIP(addr)
	for _, n := range a.trusted {
		if ip != nil && n.Contains(ip) {
			return true
		}
	}
	return false
}
