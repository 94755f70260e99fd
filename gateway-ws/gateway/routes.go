package gateway

import (
	"net/http"

	"tidings/gateway-ws/web"
	"tidings/lib/fn"
	"tidings/lib/metrics"
)

// Handler returns the gateway's HTTP routes.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /socket/websocket", s.serveSocket)
	for _, method := range []string{"GET", "POST", "OPTIONS"} {
		mux.HandleFunc(method+" /socket/longpoll", s.serveLongPoll)
	}
	mux.Handle("/function/", s.proxy)
	mux.HandleFunc("POST /internal/broadcast", s.serveBroadcast)
	mux.HandleFunc("POST /api/topics/{id}/notifications", s.servePublish)
	mux.HandleFunc("POST /api/notifications", s.serveDirect)
	mux.HandleFunc("GET /healthz", s.serveHealth)
	mux.HandleFunc("GET /api/cluster", s.serveCluster)
	mux.Handle("/api/jobs/", s.jobs.Handler())
	mux.Handle("GET /metrics", metrics.Handler(s.reg))
	mux.HandleFunc("GET /api/status", s.serveStatus)
	ui := web.Handler() // the web client, the dashboard and their assets
	mux.Handle("GET /{$}", ui)
	mux.Handle("GET /dashboard", ui)
	mux.Handle("GET /assets/", ui)
	return fn.Routes(mux)
}
