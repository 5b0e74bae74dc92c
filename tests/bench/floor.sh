#!/bin/sh
# The machine's floor (make bench, BENCH_ONLY=floor): what the kernel and the
# hypervisor charge for the work a session cannot avoid, measured by
# tests/bench/floor.c with nothing of the suite in the way, so that the
# per-session figures of bench.py can be read against it:
#   - a fresh process: fork and exit; vfork and exec of a program with no C
#     library, of a static glibc program, and of queue-inject (a static Rust
#     binary, exiting at its usage error)
#   - why an exec of a static glibc program costs what it does here: the
#     CPUID instructions it runs at start (counted by single-stepping it),
#     and what one costs (a hypervisor traps it)
#   - a page fault (the disk's share is durable.py's, in bench.py's run)
# Needs cc (with the static C library, libc6-dev) on x86-64. Works in
# BENCH_DIR/floor (default var/bench/floor, on the project's disk).
# Output: a markdown table on stdout.
set -eu
cd "$(dirname "$0")/../.."
top=$(pwd)
base=${BENCH_DIR:-$top/var/bench}/floor
small=0
[ "${BENCH_SCALE:-full}" = small ] && small=1
n() { if [ $small = 1 ]; then echo "$1"; else echo "$2"; fi; }
command -v cc >/dev/null || { echo "floor.sh: needs cc" >&2; exit 1; }
[ "$(uname -m)" = x86_64 ] || { echo "floor.sh: x86-64 only" >&2; exit 1; }
[ -x bin/queue-inject ] || { echo "floor.sh: bin/queue-inject missing: run make" >&2; exit 1; }
rm -rf "$base"
mkdir -p "$base"
cc -O2 -Wall -o "$base/floor" tests/bench/floor.c
printf '.globl _start\n_start:\n\tmov $60, %%eax\n\txor %%edi, %%edi\n\tsyscall\n' >"$base/nolibc.s"
cc -nostdlib -static -o "$base/nolibc" "$base/nolibc.s"
echo 'int main(void) { return 0; }' >"$base/true.c"
static_true=
if cc -O2 -static -o "$base/static-true" "$base/true.c" 2>/dev/null; then
	static_true=$base/static-true
fi
f=$base/floor
# row LABEL MEASURE...: "| label | wall us | CPU us |"
row() {
	label=$1
	shift
	set -- $("$f" "$@")
	printf '| %s | %s | %s |\n' "$label" "$2" "$3"
}
echo "| per operation | wall (us) | CPU (us) |"
echo "|---|---|---|"
row "fork, child _exits, waitpid" fork "$(n 300 3000)"
row "vfork + exec + exit, no C library" spawn "$(n 200 2000)" "$base/nolibc"
if [ -n "$static_true" ]; then
	row "vfork + exec + exit, static glibc" spawn "$(n 200 2000)" "$static_true"
fi
row "vfork + exec + exit, queue-inject (static Rust, usage error)" spawn "$(n 100 1000)" "$top/bin/queue-inject" -x
row "one CPUID instruction" cpuid "$(n 1000 10000)"
row "first write to an anonymous page" fault "$(n 2000 20000)"
echo
if [ -n "$static_true" ]; then
	set -- $("$f" cpuids "$static_true")
	echo "A static glibc program runs $2 CPUID instructions from exec to exit ($3 instructions in all)."
fi
set -- $("$f" cpuids "$top/bin/queue-inject" -x)
echo "queue-inject, exiting at its usage error: $2 CPUID instructions ($3 instructions in all)."
echo "CPU: user and system time of the measuring process and its children, per operation; $(nproc) processors, Linux $(uname -r), $(date -u '+%Y-%m-%d %H:%M') UTC."
rm -rf "$base"
