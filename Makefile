# tablefsm: run `make` to list the targets.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

GO              ?= go
BIN             := $(CURDIR)/bin
PROTOC_VERSION  := 3.21.12
PROTOC_GEN_GO   := google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
PROTOC_GEN_GRPC := google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.6.0
STATICCHECK     := honnef.co/go/tools/cmd/staticcheck@v0.8.2
GRPCURL         := github.com/fullstorydev/grpcurl/cmd/grpcurl@v1.9.4

.PHONY: help
help: ## List the targets.
	@awk 'BEGIN {FS = ":.*## "} /^[a-z][a-z-]*:.*## / {printf "  %-10s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: deps
deps: ## Install the Debian packages the build needs (protoc, Graphviz) when missing.
	@if ! command -v protoc >/dev/null || ! command -v dot >/dev/null; then \
		sudo=""; [ "$$(id -u)" -eq 0 ] || sudo=sudo; \
		$$sudo apt-get update -qq && \
		$$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends protobuf-compiler graphviz >/dev/null; \
	fi

.PHONY: tools
tools: deps ## Install the pinned code generators, staticcheck and grpcurl into ./bin.
	@command -v protoc >/dev/null || { echo "protoc not found: apt-get install protobuf-compiler ($(PROTOC_VERSION))" >&2; exit 1; }
	@protoc --version | grep -qx 'libprotoc $(PROTOC_VERSION)' || { echo "protoc $(PROTOC_VERSION) required, found: $$(protoc --version)" >&2; exit 1; }
	@GOBIN=$(BIN) $(GO) install $(PROTOC_GEN_GO)
	@GOBIN=$(BIN) $(GO) install $(PROTOC_GEN_GRPC)
	@GOBIN=$(BIN) $(GO) install $(STATICCHECK)
	@GOBIN=$(BIN) $(GO) install $(GRPCURL)

.PHONY: generate
generate: tools ## Regenerate every generated file (FSM code, tests, diagrams, protobuf).
	PATH="$(BIN):$$PATH" protoc -I grpcapi/replicationpb \
		--go_out=paths=source_relative:grpcapi/replicationpb \
		grpcapi/replicationpb/replication.proto
	PATH="$(BIN):$$PATH" protoc -I grpcapi/replicationpb -I grpcapi/replicationgrpc \
		--go_out=paths=source_relative:grpcapi/replicationgrpc \
		--go-grpc_out=paths=source_relative:grpcapi/replicationgrpc \
		grpcapi/replicationgrpc/replication_service.proto
	PATH="$(BIN):$$PATH" protoc -I grpcapi/inspectpb \
		--go_out=paths=source_relative:grpcapi/inspectpb \
		--go-grpc_out=paths=source_relative:grpcapi/inspectpb \
		grpcapi/inspectpb/inspect.proto
	PATH="$(BIN):$$PATH" protoc -I store/kvpb --go_out=paths=source_relative:store/kvpb store/kvpb/kv.proto
	$(GO) generate ./...
	cd bench && $(GO) generate ./...

.PHONY: drift
drift: generate ## Fail if `make generate` changed or added any file.
	@if [ -n "$$(git status --porcelain)" ]; then \
		echo "generated files differ from what is committed; run 'make generate' and commit:" >&2; \
		git status --porcelain >&2; git --no-pager diff --stat >&2; exit 1; fi

.PHONY: demo
demo: ## The main job: a leader drives real followerd nodes through the whole lifecycle.
	@$(GO) build -o $(BIN)/ ./cmd/followerd ./cmd/replicate
	@$(BIN)/replicate demo

.PHONY: lifecycle
lifecycle: ## Generate the follower lifecycle from transitions.yaml and show what came out.
	$(GO) run ./gen -in transitions.yaml -out follower -mermaid docs/lifecycle.mmd -dot docs/lifecycle.dot -markdown README.md
	@echo; echo "== transitions.yaml became:"; ls -l follower/lifecycle_fsm.go follower/lifecycle_fsm_test.go docs/lifecycle.mmd docs/lifecycle.dot
	@echo; echo "== the lifecycle (docs/lifecycle.mmd):"; cat docs/lifecycle.mmd
	@echo; echo "== its generated tests:"; $(GO) test -count=1 -v -run '^TestLifecycle' ./follower | grep -E '^(--- |ok|FAIL)'

.PHONY: node-bench
node-bench: ## Benchmark followerd against a bare gRPC stream and fsync, in one run (see docs/node.md).
	@$(GO) build -o $(BIN)/ ./cmd/followerd ./cmd/replicate
	@$(BIN)/replicate bench

.PHONY: verify
verify: drift ## gofmt, go vet, staticcheck, the drift check, rendering the DOT diagrams and parsing the Mermaid ones (needs Node.js).
	@unformatted=$$(gofmt -l $$(git ls-files '*.go')); \
		if [ -n "$$unformatted" ]; then echo "gofmt needed: $$unformatted" >&2; exit 1; fi
	$(GO) vet ./...
	cd bench && $(GO) vet ./...
	$(BIN)/staticcheck ./...
	cd bench && $(BIN)/staticcheck ./...
	@for f in docs/*.dot examples/*/*.dot; do dot -Tsvg "$$f" >/dev/null || { echo "Graphviz cannot render $$f" >&2; exit 1; }; done
	@$(MAKE) --no-print-directory mermaid

.PHONY: mermaid
mermaid: ## Parse the generated Mermaid diagrams with the Mermaid library (needs Node.js ^20.19, ^22.13 or >= 24).
	@command -v npm >/dev/null || { echo "Node.js (^20.19, ^22.13 or >= 24) and npm are needed to check the Mermaid diagrams" >&2; exit 1; }
	@cd tools/mermaid && npm ci --silent --no-audit --no-fund >/dev/null
	@node tools/mermaid/check.mjs docs/*.mmd examples/*/*.mmd gen/testdata/job/job.mmd.golden gen/emit/testdata/keywords.mmd.golden

.PHONY: test
test: verify ## Run every test under the race detector (after the checks of verify).
	TABLEFSM_GRPCURL=$(BIN)/grpcurl $(GO) test -race -count=1 ./...
	$(GO) test -race -count=1 -tags invariants ./follower/...
	cd bench && $(GO) test -race -count=1 -run . -bench . -benchtime 1x ./...

.PHONY: bench
bench: ## Run every package's benchmarks against same-run baselines; write docs/BENCHMARKS.md and plots (BENCH_QUICK=1: short).
	cd bench && $(GO) run ./cmd/report -root .. -out ../docs/BENCHMARKS.md
