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
FUZZ_RELAY ?= 30000x
FUZZ_DOWNGRADE ?= 100000x
FUZZ_STORE ?= 100000x

# Package versions must start with a digit: the release, then the commit it was built from.
PKG_VERSION ?= 0.1.0+git$(shell git log -1 --format=%cd.%h --date=format:%Y%m%d 2>/dev/null || echo 0)
PKG_ARCH    ?= $(shell $(GO) env GOARCH)
PKG_DATE    := $(shell git log -1 --format=%cD 2>/dev/null || date -R)

.PHONY: all build run test unit e2e fuzz bench bench-scale lint clean man package screenshots

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
	# The desk's and the relay's behaviour again, on PostgreSQL (skipped with the reason where
	# it cannot start; the store's own tests run on both stores in the line above).
	DESKGATE_TEST_STORE=postgres $(GO) test -count=1 ./gateway/desk ./gateway/relay
	$(MAKE) fuzz

unit:
	$(GO) test -count=1 $$($(GO) list ./... | grep -v /test)
	DESKGATE_TEST_STORE=postgres $(GO) test -count=1 ./gateway/desk ./gateway/relay

e2e: build
	$(GO) test -count=1 -v ./test/...

fuzz:
	$(GO) test -run='^$$' -fuzz='^FuzzParse$$' -fuzztime=$(FUZZ_PARSE) ./gateway/mailparse
	$(GO) test -run='^$$' -fuzz='^FuzzClassify$$' -fuzztime=$(FUZZ_ADDR) ./gateway/addr
	$(GO) test -run='^$$' -fuzz='^FuzzFindTags$$' -fuzztime=$(FUZZ_ADDR) ./gateway/addr
	$(GO) test -run='^$$' -fuzz='^FuzzCanonical$$' -fuzztime=$(FUZZ_ADDR) ./gateway/addr
	$(GO) test -run='^$$' -fuzz='^FuzzAddressKey$$' -fuzztime=$(FUZZ_ADDR) ./gateway/model
	$(GO) test -run='^$$' -fuzz='^FuzzParse$$' -fuzztime=$(FUZZ_DSN) ./gateway/dsn
	$(GO) test -run='^$$' -fuzz='^FuzzHeaders$$' -fuzztime=$(FUZZ_AUTH) ./gateway/auth
	$(GO) test -run='^$$' -fuzz='^FuzzSession$$' -fuzztime=$(FUZZ_SMTP) ./gateway/inbound
	$(GO) test -run='^$$' -fuzz='^FuzzTransact$$' -fuzztime=$(FUZZ_RELAY) ./gateway/relay
	$(GO) test -run='^$$' -fuzz='^FuzzDowngrade7Bit$$' -fuzztime=$(FUZZ_DOWNGRADE) ./gateway/relay
	$(GO) test -run='^$$' -fuzz='^FuzzDataOctets$$' -fuzztime=$(FUZZ_DOWNGRADE) ./gateway/relay
	$(GO) test -run='^$$' -fuzz='^FuzzDecodeComment$$' -fuzztime=$(FUZZ_STORE) ./store
	$(GO) test -run='^$$' -fuzz='^FuzzDecodeDelivery$$' -fuzztime=$(FUZZ_STORE) ./store

bench: build
	$(GO) build -o bin/deskgate-bench ./test/bench
	./bin/deskgate-bench

# The desk at scale: SCALE tickets with five comments each, against an empty desk, in one run.
# SCALE=20000 for a quick look. The default takes about half an hour and 33 GB of disk, 66 GB
# with the backup it times (with less room free, the backup is streamed and not written).
SCALE ?= 1000000
bench-scale: build
	$(GO) build -o bin/deskgate-bench ./test/bench
	./bin/deskgate-bench -scale $(SCALE)

# The screenshots that docs/web.md shows, taken by the browser tests in headless Chromium.
# DESKGATE_SCREENSHOTS names the folder the tests write their PNGs into (screenshotPath in
# test/browser_test.go; a relative folder is taken from the repository's root); without it
# the screenshots go to a temporary folder and are only checked.
SCREENSHOTS ?= docs/web
screenshots:
	DESKGATE_SCREENSHOTS='$(SCREENSHOTS)' $(GO) test -count=1 -v -run '^TestBrowser' ./test

# Man pages: deskgate(8), one per subcommand, and deskgate.yaml(5), into man/.
man: build
	rm -rf man
	./bin/deskgate man --dir man --config-reference docs/configuration.md

# dist/deskgate_*.deb and dist/deskgate-*.rpm, built by nfpm (a tool in go.mod).
package: man
	rm -rf dist
	mkdir -p dist/stage/man dist/stage/man5 dist/stage/completion dist/stage/doc/docs dist/stage/doc/examples
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS) -s -w' -o dist/stage/deskgate ./cmd/deskgate
	for f in man/*.8; do gzip -9n < $$f > dist/stage/man/$$(basename $$f).gz; done
	gzip -9n < man/deskgate.yaml.5 > dist/stage/man5/deskgate.yaml.5.gz
	./dist/stage/deskgate completion bash > dist/stage/completion/deskgate.bash
	./dist/stage/deskgate completion zsh > dist/stage/completion/_deskgate
	cp README.md packaging/copyright dist/stage/doc/
	cp -r docs/. dist/stage/doc/docs/
	cp contrib/deskgate.example.yaml contrib/postfix-main.cf contrib/postfix-transport contrib/prometheus-alerts.yaml dist/stage/doc/examples/
	printf 'deskgate (%s) unstable; urgency=medium\n\n  * Built from the deskgate repository at %s.\n\n -- deskgate maintainers <deskgate@example.com>  %s\n' \
		'$(PKG_VERSION)' '$(VERSION)' '$(PKG_DATE)' | gzip -9n > dist/stage/doc/changelog.gz
	PKG_VERSION='$(PKG_VERSION)' PKG_ARCH='$(PKG_ARCH)' $(GO) tool nfpm pkg --config packaging/nfpm.yaml --packager deb --target dist/
	PKG_VERSION='$(PKG_VERSION)' PKG_ARCH='$(PKG_ARCH)' $(GO) tool nfpm pkg --config packaging/nfpm.yaml --packager rpm --target dist/
	ls -l dist/*.deb dist/*.rpm

lint:
	test -z "$$(gofmt -l .)"
	$(GO) vet ./...
	$(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2 ./...

clean:
	rm -rf bin
