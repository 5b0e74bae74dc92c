#!/bin/sh
# make bench: smtpd-rs + queue-inject, a private Postfix and smtp-sink, side
# by side, driven by smtp-source (see tests/bench/bench.py for the scenarios
# and the BENCH_* settings). BENCH_SCALE=small: a quick check that it works.
set -eu
cd "$(dirname "$0")/../.."
py=/usr/bin/python3
[ -x "$py" ] || py=python3
exec "$py" tests/bench/bench.py "$@"
