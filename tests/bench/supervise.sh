#!/bin/sh
# smtpd-supervise benchmark: sessions per second with one message per
# connection (smtp-source, 1 and 20 sessions in parallel: the a1 and a20
# scenarios) and connect-to-greeting latency (median and 99th percentile), for
# the same session program under tcpserver, under smtpd-supervise fork+exec
# per connection, and under smtpd-supervise hand-off workers (-m 1 and -m 100).
#
# Usage: tests/bench/supervise.sh [messages [latency-samples]]
#   (defaults 2000 and 2000; use small figures for a dry run)
# Environment:
#   SMTPD      the session program (default: bin/smtpd-rs); it must support
#              the hand-off protocol for the handoff* modes
#   SUPERVISE  smtpd-supervise (default: bin/smtpd-supervise)
#   MODES      which runs (default: "tcpserver classic handoff1 handoff100")
#   WORKERS    -w for the hand-off modes (default: one per processor)
# The session program gets RELAYCLIENT="" and QUEUE_DIR=<a fresh queue> per run;
# when QUEUE_DIR/new exists afterwards the script checks that exactly the
# messages sent are there.
set -eu

N=${1:-2000}
LAT=${2:-2000}
SMTPD=${SMTPD:-bin/smtpd-rs}
SUPERVISE=${SUPERVISE:-bin/smtpd-supervise}
MODES=${MODES:-"tcpserver classic handoff1 handoff100"}
WORKERS=${WORKERS:-$(nproc)}
PY=${PYTHON:-python3}

for p in smtp-source tcpserver "$PY"; do
    command -v "$p" >/dev/null 2>&1 || { echo "missing $p (Debian packages: postfix, ucspi-tcp, python3)" >&2; exit 1; }
done
[ -x "$SUPERVISE" ] || { echo "missing $SUPERVISE: run make first" >&2; exit 1; }

tmp=$(mktemp -d)
server=
cleanup() {
    [ -n "$server" ] && kill "$server" 2>/dev/null && wait "$server" 2>/dev/null
    rm -rf "$tmp"
}
trap cleanup EXIT INT TERM

free_port() {
    "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

wait_port() {
    "$PY" - "$1" <<'PYEOF'
import socket, sys, time
port = int(sys.argv[1])
for _ in range(250):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        sys.exit(0)
    except OSError:
        time.sleep(0.02)
sys.exit(1)
PYEOF
}

# Seconds (float) that a command takes.
timed() {
    t0=$(date +%s.%N)
    "$@" >/dev/null
    t1=$(date +%s.%N)
    echo "$t0 $t1" | awk '{ printf "%.6f", $2 - $1 }'
}

latency() {
    "$PY" - "$1" "$2" <<'PYEOF'
import socket, sys, time
port, n = int(sys.argv[1]), int(sys.argv[2])
lat = []
for _ in range(n):
    t = time.perf_counter()
    s = socket.create_connection(("127.0.0.1", port))
    s.recv(1)
    lat.append(time.perf_counter() - t)
    s.sendall(b"QUIT\r\n")
    s.close()
lat.sort()
med = lat[len(lat) // 2]
p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))]
print("%.3f %.3f" % (med * 1000, p99 * 1000))
PYEOF
}

count_queue() {
    if [ -d "$1/new" ]; then ls "$1/new" | wc -l; else echo "-"; fi
}

printf '%-12s %10s %10s %12s %12s %8s\n' mode "a1 sess/s" "a20 sess/s" "greet med ms" "greet p99 ms" queued
for mode in $MODES; do
    port=$(free_port)
    q="$tmp/queue-$mode"
    mkdir -p "$q"
    case $mode in
        tcpserver)  set -- tcpserver -R -H -l 0 -c 100 127.0.0.1 "$port" $SMTPD ;;
        classic)    set -- "$SUPERVISE" -q -c 100 -C 100 127.0.0.1 "$port" $SMTPD ;;
        handoff1)   set -- "$SUPERVISE" -q -c 100 -C 100 -W -w "$WORKERS" -m 1 127.0.0.1 "$port" $SMTPD ;;
        handoff100) set -- "$SUPERVISE" -q -c 100 -C 100 -W -w "$WORKERS" -m 100 127.0.0.1 "$port" $SMTPD ;;
        *) echo "unknown mode $mode" >&2; exit 1 ;;
    esac
    RELAYCLIENT="" QUEUE_DIR="$q" "$@" 2>"$tmp/$mode.log" &
    server=$!
    wait_port "$port" || { echo "$mode: server did not start:" >&2; cat "$tmp/$mode.log" >&2; exit 1; }
    before=$(count_queue "$q")
    a1=$(timed smtp-source -s 1 -m "$N" -l 1024 -f a@example.org -t b@example.org "127.0.0.1:$port")
    a20=$(timed smtp-source -s 20 -m "$N" -l 1024 -f a@example.org -t b@example.org "127.0.0.1:$port")
    lat=$(latency "$port" "$LAT")
    after=$(count_queue "$q")
    kill "$server"
    wait "$server" 2>/dev/null || true
    server=
    queued=-
    if [ "$after" != "-" ]; then
        queued=$((after - before))
        [ "$queued" -eq $((2 * N)) ] || echo "$mode: WARNING: $queued messages queued, $((2 * N)) sent" >&2
    fi
    echo "$a1 $a20 $lat $queued" | awk -v m="$mode" -v n="$N" \
        '{ printf "%-12s %10.0f %10.0f %12.3f %12.3f %8s\n", m, n / $1, n / $2, $3, $4, $5 }'
done
