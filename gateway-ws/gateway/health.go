package gateway

import (
	"context"
	"fmt"
	"net/http"
	"time"
)

func (s *Server) serveHealth(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	w.Header().Set("Content-Type", "application/json")
	if err := s.rdb.Ping(ctx).Err(); err != nil {
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = w.Write([]byte(`{"status":"redis down"}`))
		return
	}
	_, _ = fmt.Fprintf(w, `{"status":"ok","connections":%d,"topics":%d}`, s.Connections(), s.Topics())
}
