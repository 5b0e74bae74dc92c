#!/bin/sh
# Run the cargo-fuzz targets of fuzz/ (libFuzzer + AddressSanitizer), one
# after the other, each for FUZZ_SECONDS seconds.
#
#   sh tests/fuzz.sh [TARGET...]     every target when none is named
#
# FUZZ_SECONDS  seconds per target (default 3: the bounded run of make test;
#               make fuzz sets 300)
# FUZZ_RSS_MB   libFuzzer -rss_limit_mb and -malloc_limit_mb (default 512):
#               an input that makes a parser allocate more is a finding.
#
# The stable toolchain builds with RUSTC_BOOTSTRAP=1 (sanitizer flags are
# nightly-only). The build is for the host target: the main crate's
# .cargo/config.toml asks for static binaries, which ASan cannot be; the
# RUSTFLAGS that cargo-fuzz sets take precedence over that file's.
# Inputs libFuzzer finds go to fuzz/corpus-run/ (ignored by git); the seeds
# kept in git are fuzz/corpus/. A crash leaves its input in fuzz/artifacts/
# and fails the run; `cargo fuzz run TARGET fuzz/artifacts/TARGET/crash-...`
# replays it. Exit 0 only when every target ran clean.
set -eu
cd "$(dirname "$0")/../fuzz"
export RUSTC_BOOTSTRAP=1
HOME=${HOME:-/root}
PATH="$HOME/.cargo/bin:$PATH"
export PATH
secs=${FUZZ_SECONDS:-3}
mem=${FUZZ_RSS_MB:-512}
host=$(rustc -vV | sed -n 's/^host: //p')

if ! cargo fuzz --version >/dev/null 2>&1; then
	echo "tests/fuzz.sh: cargo-fuzz is missing: cargo install cargo-fuzz --locked (tests/install-peers.sh does it)" >&2
	exit 1
fi
targets=${*:-$(cargo fuzz list)}
cargo fuzz build --target "$host" >/dev/null 2>build.log || { cat build.log >&2; exit 1; }
rm -f build.log
fail=0
for t in $targets; do
	mkdir -p "corpus-run/$t" "corpus/$t"
	log=corpus-run/$t.log
	start=$(date +%s)
	if cargo fuzz run --target "$host" "$t" "corpus-run/$t" "corpus/$t" -- \
		-max_total_time="$secs" -rss_limit_mb="$mem" -malloc_limit_mb="$mem" \
		-max_len=8192 -timeout=10 -print_final_stats=1 >"$log" 2>&1; then
		runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
		cov=$(grep -o 'cov: [0-9]*' "$log" | tail -n 1)
		echo "fuzz $t: clean, $(($(date +%s) - start)) s, ${runs:-?} runs, ${cov:-cov: ?}"
	else
		fail=1
		echo "fuzz $t: FAILED (log $PWD/$log)"
		grep -E 'panicked|ERROR: AddressSanitizer|ERROR: libFuzzer|SUMMARY|Test unit written' "$log" | head -n 8
	fi
done
exit $fail
