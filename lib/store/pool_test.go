package store

import (
	"testing"
	"time"
)

func TestPoolConfigHasShortTimeoutsUnlessTheURLSetsThem(t *testing.T) {
	cfg, err := PoolConfig("postgres://postgres@127.0.0.1:5432/x?sslmode=disable")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.ConnConfig.ConnectTimeout != ConnectTimeout || cfg.HealthCheckPeriod != HealthCheckPeriod || cfg.ConnConfig.DialFunc == nil {
		t.Errorf("connect timeout %v, health check %v: want %v and %v and a keepalive dialer",
			cfg.ConnConfig.ConnectTimeout, cfg.HealthCheckPeriod, ConnectTimeout, HealthCheckPeriod)
	}
	cfg, err = PoolConfig("postgres://postgres@127.0.0.1:5432/x?sslmode=disable&connect_timeout=9&pool_health_check_period=1m")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.ConnConfig.ConnectTimeout != 9*time.Second || cfg.HealthCheckPeriod != time.Minute {
		t.Errorf("connect timeout %v, health check %v: the URL's settings must win", cfg.ConnConfig.ConnectTimeout, cfg.HealthCheckPeriod)
	}
}
