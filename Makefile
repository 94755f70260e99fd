# tidings: `make up` runs the whole system, `make test` runs every test.
GO      ?= go
BIN     := $(CURDIR)/.bin
STATICCHECK_VERSION := v0.8.2
export GOFLAGS := -buildvcs=false

.PHONY: up test services vet lint unit secrets images clean

## up: run everything on this machine (Ctrl-C stops it all)
up:
	@$(GO) build -o $(BIN)/devstack ./infra/devstack
	@$(BIN)/devstack

## test: vet, staticcheck and every test against real PostgreSQL and Redis
test: services vet lint unit

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

## secrets: make the dev secrets docker-compose.yml mounts
secrets:
	@mkdir -p .dev/secrets
	@for s in tidings-jwt-secret tidings-internal-key; do \
	  [ -s .dev/secrets/$$s ] || head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > .dev/secrets/$$s; done
	@echo "secrets in .dev/secrets"

## images: build every function image with faas-cli (needs Docker)
images:
	faas-cli build -f stack.yml

clean:
	rm -rf $(BIN) build
