# smtpd-rs: build, test, install. Logic lives in scripts under tests/ and .ci/.
PREFIX ?= /usr/local
DESTDIR ?=
CARGO ?= cargo
TARGET_DIR := target/x86_64-unknown-linux-gnu/release
BINS := $(patsubst src/bin/%.rs,%,$(wildcard src/bin/*.rs))
MAN8 := $(wildcard man/*.8)
MAN5 := $(wildcard man/*.5)

.PHONY: all build test peers install check-man run bench clean

all: build

build:
	$(CARGO) build --release --locked
	mkdir -p bin
	for b in $(BINS); do cp -f $(TARGET_DIR)/$$b bin/$$b; done

peers:
	sh tests/install-peers.sh

test: peers build check-man
	$(CARGO) test --release --locked

check-man:
	@for m in $(MAN8) $(MAN5); do groff -man -ww -z $$m || exit 1; done

install: build
	for b in $(BINS); do install -Dm755 $(TARGET_DIR)/$$b $(DESTDIR)$(PREFIX)/bin/$$b; done
	for m in $(MAN8); do install -Dm644 $$m $(DESTDIR)$(PREFIX)/share/man/man8/$${m#man/}; done
	for m in $(MAN5); do install -Dm644 $$m $(DESTDIR)$(PREFIX)/share/man/man5/$${m#man/}; done

run: build
	sh conf-examples/run-local.sh

bench: build
	sh tests/bench/run.sh

clean:
	$(CARGO) clean
	rm -rf bin
