package gateway

import (
	"context"
	"fmt"
	"time"

	"tidings/gateway-ws/jobs"
	"tidings/lib/ratelimit"
)

// newJobs is the job queue: its workers call functions through the same
// invoker as everything else, and each job's owner hears of its progress on
// their user:<id> channel (`job` events).
func (s *Server) newJobs() (*jobs.Queue, error) {
	jc := s.cfg.jobsConfig()
	jc.Log = s.log
	jc.Limiter, jc.Quota = s.limiter, ratelimit.Jobs(s.cfg.Limits)
	jc.Notify = func(ctx context.Context, owner int64, payload any) {
		if owner <= 0 {
			return // a system job: nobody to tell
		}
		ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		if err := s.Broadcast(ctx, fmt.Sprintf("user:%d", owner), "job", payload); err != nil {
			s.log.Warn("job event not delivered", "user", owner, "err", err)
		}
	}
	q, err := jobs.New(s.rdb, s.calls, s.tokens, jc)
	if err != nil {
		return nil, fmt.Errorf("job queue: %w", err)
	}
	return q, nil
}
