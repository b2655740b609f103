# deskgate: `make run` starts the daemon on the dev config, `make test` runs every test.
GO      ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X main.version=$(VERSION)
DEV_CONFIG := contrib/deskgate.dev.yaml
# Execution counts, not durations: with a duration, Go 1.26's fuzz coordinator can fail a
# run with a bare "context deadline exceeded" at the deadline (golang/go#75804, fixed in
# Go 1.27). Each budget is roughly ten seconds on the 2-core CI machine.
FUZZ_PARSE ?= 300000x
FUZZ_ADDR  ?= 600000x
FUZZ_DSN   ?= 300000x
FUZZ_AUTH  ?= 200000x
FUZZ_SMTP  ?= 50000x

.PHONY: all build run test unit e2e fuzz bench lint clean

all: build

build:
	$(GO) build -ldflags '$(LDFLAGS)' -o bin/deskgate ./cmd/deskgate

var/admin.token:
	mkdir -p var
	umask 077 && head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' > $@

run: build var/admin.token
	./bin/deskgate check-config --config $(DEV_CONFIG)
	./bin/deskgate serve --config $(DEV_CONFIG)

# Every test: unit, end-to-end (real binary, swaks, Postfix), crash, and a short fuzz run.
test: build
	$(GO) vet ./...
	$(GO) test -count=1 ./...
	$(MAKE) fuzz

unit:
	$(GO) test -count=1 $$($(GO) list ./... | grep -v /test)

e2e: build
	$(GO) test -count=1 -v ./test/...

fuzz:
	$(GO) test -run='^$$' -fuzz='^FuzzParse$$' -fuzztime=$(FUZZ_PARSE) ./gateway/mailparse
	$(GO) test -run='^$$' -fuzz='^FuzzClassify$$' -fuzztime=$(FUZZ_ADDR) ./gateway/addr
	$(GO) test -run='^$$' -fuzz='^FuzzFindTags$$' -fuzztime=$(FUZZ_ADDR) ./gateway/addr
	$(GO) test -run='^$$' -fuzz='^FuzzParse$$' -fuzztime=$(FUZZ_DSN) ./gateway/dsn
	$(GO) test -run='^$$' -fuzz='^FuzzHeaders$$' -fuzztime=$(FUZZ_AUTH) ./gateway/auth
	$(GO) test -run='^$$' -fuzz='^FuzzSession$$' -fuzztime=$(FUZZ_SMTP) ./gateway/inbound

bench: build
	$(GO) build -o bin/deskgate-bench ./test/bench
	./bin/deskgate-bench

lint:
	test -z "$$(gofmt -l .)"
	$(GO) vet ./...
	$(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2 ./...

clean:
	rm -rf bin
