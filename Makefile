# tidings: `make up` runs the whole system, `make test` runs every test.
GO      ?= go
BIN     := $(CURDIR)/.bin
STATICCHECK_VERSION := v0.8.2
export GOFLAGS := -buildvcs=false

.PHONY: up test services vet lint unit unit-cluster node fuzz chaos bench bench-100k secrets images lambda clean

## up: run everything on this machine (Ctrl-C stops it all); `make up
## DEV_REDIS=cluster` runs it on a throwaway Redis Cluster (three masters,
## one replica each) instead of one Redis server
up:
	@$(GO) build -o $(BIN)/devstack ./infra/devstack
	@$(BIN)/devstack

## test: vet, staticcheck and every test against real PostgreSQL and Redis:
## Go tests (with a real Prometheus), the Node tests with the official
## phoenix client and the browser test in Debian's chromium, a short fuzz
## of the frame decoder, and a small chaos run; the tests of every Redis
## user run twice: on one Redis and on a throwaway Redis Cluster
test: services vet lint unit unit-cluster node fuzz chaos

services:
	@bash infra/test-services.sh

vet:
	$(GO) vet ./...

lint: $(BIN)/staticcheck
	$(BIN)/staticcheck ./...

$(BIN)/staticcheck:
	GOBIN=$(BIN) GOFLAGS= $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)

unit:
	$(GO) test -count=1 -timeout 15m ./...

## unit-cluster: the packages that use Redis, again on a throwaway Redis
## Cluster of 3 masters with a replica each (go run ./infra/rediscluster)
CLUSTER_PACKAGES := ./lib/redisx/ ./gateway-ws/gateway/ ./gateway-ws/coordinator/ ./gateway-ws/jobs/ \
	./gateway-ws/cluster/ ./lib/cache/ ./lib/twopc/ ./lib/ratelimit/ ./lib/auth/
unit-cluster:
	$(GO) run ./infra/rediscluster -masters 3 -replicas 1 -- $(GO) test -count=1 -timeout 15m $(CLUSTER_PACKAGES)

node:
	npm ci --prefix gateway-ws/test --no-audit --no-fund --silent
	npm --prefix gateway-ws/test test
	npm ci --prefix gateway-ws/web/test --no-audit --no-fund --silent
	npm --prefix gateway-ws/web/test test

# An execution count, not a duration: go1.26's fuzz coordinator can fail a
# duration-bounded run at its deadline with no crasher (golang/go#75804).
fuzz:
	$(GO) test ./gateway-ws/gateway/ -run '^$$' -fuzz '^FuzzDecode$$' -fuzztime 30000x
	$(GO) test ./lib/fn/ -run '^$$' -fuzz '^FuzzDecodeJSON$$' -fuzztime 5000x
	$(GO) test ./lib/fn/ -run '^$$' -fuzz '^FuzzParseID$$' -fuzztime 5000x

## chaos: publishes under random SIGKILLs and crashes; checks the invariant
CHAOS_DURATION ?= 8s
chaos:
	$(GO) run ./infra/chaos -duration $(CHAOS_DURATION)

## bench: every benchmark, each beside its peer measured in the same run;
## the tables also land in build/bench.md (copy them to docs/benchmarks.md)
BENCH_CONNS ?= 10000
# The fan-out's Redis rows (one server beside a Redis Cluster): topic
# sizes, e.g. BENCH_REDIS_SIZES=10000,100000 (minutes); empty: none.
BENCH_REDIS_SIZES ?= 10000
bench:
	@mkdir -p build
	@{ $(GO) run ./infra/bench/ws -conns $(BENCH_CONNS) && echo && \
	   $(GO) run ./infra/bench/publish && echo && \
	   $(GO) run ./infra/bench/fanout -redis-sizes '$(BENCH_REDIS_SIZES)' && echo && \
	   $(GO) run ./infra/bench/avatar && echo && \
	   $(GO) run ./infra/bench/mail && echo && \
	   $(GO) run ./infra/bench/cache; } | tee build/bench.md

## bench-100k: gateway-ws alone, $(BENCH_100K_CONNS) sockets over
## $(BENCH_100K_REPLICAS) replicas dialed by as many client processes (each
## under the 20,000 open-file hard limit); minutes, so not part of bench
BENCH_100K_CONNS ?= 100000
BENCH_100K_REPLICAS ?= 8
bench-100k:
	@mkdir -p build
	@$(GO) run ./infra/bench/ws -replicas $(BENCH_100K_REPLICAS) -conns $(BENCH_100K_CONNS) -rounds 10 -burst 5 | tee build/bench-100k.md

## secrets: make the dev secrets docker-compose.yml mounts (the list and
## the generator are infra/openfaas/deploy.sh's)
secrets:
	@bash infra/openfaas/deploy.sh files .dev/secrets
	@echo "secrets in .dev/secrets"

## images: build every function image with faas-cli (needs Docker)
images:
	faas-cli build -f stack.yml

## lambda: the one bootstrap every function of infra/aws/template.yaml runs
lambda:
	@mkdir -p build/lambda
	GOOS=linux GOARCH=arm64 CGO_ENABLED=0 $(GO) build -tags lambda.norpc -trimpath -ldflags="-s -w" \
	  -o build/lambda/bootstrap ./template/tidings-go

clean:
	rm -rf $(BIN) build
