# smtpd-rs: build, test, install. Logic lives in scripts under tests/, .ci/
# and conf-examples/; this file only names the steps.
PREFIX ?= /usr/local
DESTDIR ?=
CARGO ?= cargo
# .cargo/config.toml names the target (static binaries), so cargo puts them here.
TARGET_DIR := target/x86_64-unknown-linux-gnu/release
BINS := $(patsubst src/bin/%.rs,%,$(wildcard src/bin/*.rs))
MAN8 := $(wildcard man/*.8)
MAN5 := $(wildcard man/*.5)
# Installed: the daemons and the programs they run into $(PREFIX)/sbin;
# sendmail and queue-drop (setgid to DROP_GROUP, which must exist, see
# smtpd-queue(5) MAILDROP) side by side into $(LIBEXEC), off PATH, so that
# they shadow no system sendmail; install-sendmail links SENDMAIL_LINK to it.
LOCAL_BINS := sendmail queue-drop
SBINS := $(filter-out $(LOCAL_BINS),$(BINS))
LIBEXEC ?= $(PREFIX)/lib/smtpd-rs
DROP_GROUP ?= smtpd-drop
SENDMAIL_LINK ?= /usr/sbin/sendmail

.PHONY: all build test peers install install-sendmail check-man run bench clean fuzz fuzz-short

all: build

# Release programs, copied into bin/ (git ignores it).
build:
	$(CARGO) build --release --locked
	mkdir -p bin
	for b in $(BINS); do cp -f $(TARGET_DIR)/$$b bin/$$b || exit 1; done

# Real peers the tests drive (Debian packages); quick when all are present.
peers:
	sh tests/install-peers.sh

# Every test (debug profile: the release profile's LTO would link each of the
# ~30 test programs for minutes); --no-fail-fast so each prints its summary.
test: peers build check-man fuzz-short
	$(CARGO) test --locked --no-fail-fast

# Every fuzz target of fuzz/ for a few seconds (cargo-fuzz, ASan); make fuzz
# for long runs (FUZZ_SECONDS per target, default 300). See tests/fuzz.sh.
fuzz-short: peers
	FUZZ_SECONDS=$${FUZZ_SECONDS:-3} sh tests/fuzz.sh

fuzz: peers
	FUZZ_SECONDS=$${FUZZ_SECONDS:-300} sh tests/fuzz.sh

# groff -ww -z must be silent for every page.
check-man:
	@for m in $(MAN8) $(MAN5); do \
		out=$$(groff -man -ww -z $$m 2>&1) && [ -z "$$out" ] || { echo "$$m: $$out"; exit 1; }; \
	done

install: build
	for b in $(SBINS); do install -Dm755 $(TARGET_DIR)/$$b $(DESTDIR)$(PREFIX)/sbin/$$b || exit 1; done
	install -Dm755 $(TARGET_DIR)/sendmail $(DESTDIR)$(LIBEXEC)/sendmail
	install -Dm2755 -g $(DROP_GROUP) $(TARGET_DIR)/queue-drop $(DESTDIR)$(LIBEXEC)/queue-drop
	for m in $(MAN8); do install -Dm644 $$m $(DESTDIR)$(PREFIX)/share/man/man8/$${m#man/} || exit 1; done
	for m in $(MAN5); do install -Dm644 $$m $(DESTDIR)$(PREFIX)/share/man/man5/$${m#man/} || exit 1; done

# Only when asked: this sendmail becomes the system's (SENDMAIL_LINK, default
# /usr/sbin/sendmail), never over another MTA's program.
install-sendmail:
	@if [ -e $(DESTDIR)$(SENDMAIL_LINK) -o -L $(DESTDIR)$(SENDMAIL_LINK) ] && \
	    [ "$$(readlink $(DESTDIR)$(SENDMAIL_LINK))" != $(LIBEXEC)/sendmail ]; then \
		echo "$(SENDMAIL_LINK) is another MTA's: remove that MTA first (or set SENDMAIL_LINK)"; exit 1; fi
	ln -sfn $(LIBEXEC)/sendmail $(DESTDIR)$(SENDMAIL_LINK)

# conf-examples/run-local.sh: smtpd-rs as hand-off workers of smtpd-supervise
# (-W -m 100; the scoreboard in var/scoreboard for bin/smtpd-supervise-status,
# the metrics in var/metrics.prom) on 127.0.0.1:2525 (PORT=n to change it), queue in ./var/queue,
# loopback only (conf-examples/local.rules); RUN_UNDER=tcpserver runs it under
# tcpserver instead.
run: build
	sh conf-examples/run-local.sh

# smtp-source against smtpd-rs, a private Postfix and smtp-sink (BENCH_SCALE=small for a quick check).
bench: build
	sh tests/bench/run.sh

clean:
	$(CARGO) clean
	rm -rf bin
