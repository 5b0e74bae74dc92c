#!/bin/sh
# Messages per second for smtp-remote against msmtp, both one process per
# 1 KB message (as qmail-rspawn and queue-run use smtp-remote), to Postfix's
# smtp-sink on loopback; and the peak RSS of one run of each.
#   usage: tests/bench/remote.sh [N]        (N messages each, default 1000)
#   SMTP_REMOTE=path (default bin/smtp-remote, made by `make build`), PORT (default 25250)
# Needs: postfix (smtp-sink), msmtp, time (/usr/bin/time).
set -eu
N=${1:-1000}
BIN=${SMTP_REMOTE:-bin/smtp-remote}
PORT=${PORT:-25250}
for p in /usr/sbin/smtp-sink /usr/bin/msmtp /usr/bin/time "$BIN"; do
    [ -x "$p" ] || { echo "remote.sh: missing $p (smtp-sink: postfix; msmtp: msmtp; time: time)" >&2; exit 111; }
done
work=$(mktemp -d)
sink=
cleanup() { [ -n "$sink" ] && kill "$sink" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT INT TERM

# A 1 KB message: headers and 14 lines of body.
{
    printf 'From: bench@example.org\nTo: sink@example.net\nSubject: bench\n\n'
    i=0
    while [ $i -lt 14 ]; do
        printf '%s\n' 'The quick brown fox jumps over the lazy dog, again and again and again.'
        i=$((i + 1))
    done
} > "$work/msg"

user=
[ "$(id -u)" = 0 ] && user="-u nobody"
# shellcheck disable=SC2086
/usr/sbin/smtp-sink $user 127.0.0.1:$PORT 256 &
sink=$!
now() { date +%s.%N; }

one_remote() { SMTP_PORT=$PORT HELOHOST=bench.example "$BIN" '[127.0.0.1]' bench@example.org sink@example.net < "$work/msg"; }
one_msmtp() { /usr/bin/msmtp --file=/dev/null --host=127.0.0.1 --port=$PORT --tls=off --auth=off --from=bench@example.org -- sink@example.net < "$work/msg"; }

# Sanity (and waiting for smtp-sink to listen): each tool delivers once.
i=0
until one_remote | tr '\0' '\n' | grep -q '^K'; do
    i=$((i + 1))
    [ $i -lt 50 ] || { echo "remote.sh: smtp-remote did not deliver" >&2; exit 1; }
    sleep 0.1
done
one_msmtp || { echo "remote.sh: msmtp did not deliver" >&2; exit 1; }

run() { # tool
    t0=$(now)
    i=0
    while [ $i -lt "$N" ]; do
        "one_$1" > /dev/null
        i=$((i + 1))
    done
    t1=$(now)
    rss=$(/usr/bin/time -f %M sh -c ". '$work/fns'; one_$1 > /dev/null" 2>&1 | tail -1)
    echo "$1 $N $t0 $t1 $rss" | awk '{ s = $4 - $3; printf "%-8s %6d msgs %8.2f s %9.1f msg/s  peak RSS %6d KB\n", $1, $2, s, $2 / s, $5 }'
}
# The functions again for /usr/bin/time's child shell.
cat > "$work/fns" <<FNS
one_remote() { SMTP_PORT=$PORT HELOHOST=bench.example "$BIN" '[127.0.0.1]' bench@example.org sink@example.net < "$work/msg"; }
one_msmtp() { /usr/bin/msmtp --file=/dev/null --host=127.0.0.1 --port=$PORT --tls=off --auth=off --from=bench@example.org -- sink@example.net < "$work/msg"; }
FNS

echo "1 KB messages, one process each, to smtp-sink on 127.0.0.1:$PORT"
run remote
run msmtp
