#!/bin/sh
# Relay throughput of the whole chain, side by side in one run:
#   smtp-source -> tcpserver + smtpd-rs -> queue-inject -> queue-run -> smtp-remote -> smtp-sink
#   smtp-source -> a private Postfix (smtpd, cleanup, qmgr, smtp) relaying to -> smtp-sink
# Messages per second from the first connection until the sink has counted
# every message. Each chain gets its own counting sink (smtp-sink -c).
#
# usage: tests/bench/relay.sh [messages [sessions]]
# settings: RELAY_MESSAGES (default 2000), RELAY_SESSIONS (20), RELAY_SIZE
# (message size, 1024), RELAY_BIN (folder of our programs, default bin/,
# filled by make), RELAY_CONCURRENCY / RELAY_CONCURRENCY_DOMAIN (queue-run's
# CONCURRENCY / CONCURRENCY_DOMAIN, default 20 / 20, as Postfix's default
# destination concurrency), RELAY_TIMEOUT (seconds per chain, 600),
# RELAY_ONLY (ours or postfix), RELAY_FRONT (what runs smtpd-rs: supervise,
# the default, smtpd-supervise -W -m 100 as make run has it; or tcpserver,
# one process per connection). Quick check: tests/bench/relay.sh 20 2
# Needs root (private Postfix instance, never the system one), postfix
# (smtp-source, smtp-sink), ucspi-tcp (tcpserver).
set -eu
cd "$(dirname "$0")/../.."
N=${1:-${RELAY_MESSAGES:-2000}}
S=${2:-${RELAY_SESSIONS:-20}}
SIZE=${RELAY_SIZE:-1024}
BIN=$(cd "${RELAY_BIN:-bin}" 2>/dev/null && pwd) || { echo "relay.sh: no ${RELAY_BIN:-bin}/: run make first" >&2; exit 1; }
TIMEOUT=${RELAY_TIMEOUT:-600}
ONLY=${RELAY_ONLY:-}
FRONT=${RELAY_FRONT:-supervise}

die() { echo "relay.sh: $*" >&2; exit 1; }
for p in /usr/sbin/smtp-source:postfix /usr/sbin/smtp-sink:postfix /usr/sbin/postfix:postfix; do
    [ -x "${p%%:*}" ] || die "missing ${p%%:*} (Debian package ${p#*:})"
done
command -v tcpserver >/dev/null || die "missing tcpserver (Debian package ucspi-tcp)"
[ "$(id -u)" = 0 ] || die "a private Postfix instance needs root"

root=$(mktemp -d /tmp/relay.XXXXXX)
chmod 755 "$root"
pids=""
cleanup() {
    for p in $pids; do kill -9 -- "-$p" 2>/dev/null || kill -9 "$p" 2>/dev/null || true; done
    if [ -f "$root/pf/etc/main.cf" ]; then /usr/sbin/postfix -c "$root/pf/etc" stop >/dev/null 2>&1 || true; sleep 1; fi
    rm -rf "$root"
}
trap cleanup EXIT INT TERM

port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
now() { date +%s.%N; }
wait_port() {
    i=0
    while ! /usr/bin/python3 -c "import socket,sys; socket.create_connection(('127.0.0.1',$1),1)" 2>/dev/null; do
        i=$((i + 1)); [ $i -lt 100 ] || die "nothing listens on port $1"; sleep 0.1
    done
}
# wait_sink FILE T0: until the sink counted N messages (or TIMEOUT); prints
# the seconds since T0. One python process polls the end of the file every
# 10 ms (a shell loop of tr and sed forked about 60 processes a second and
# took CPU from the chain it was timing).
wait_sink() {
    /usr/bin/python3 - "$1" "$2" "$N" "$TIMEOUT" <<'PY'
import re, sys, time
path, t0, n, timeout = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
c = 0
while True:
    with open(path, "rb") as f:
        f.seek(0, 2)
        f.seek(max(0, f.tell() - 256))
        m = re.findall(rb"mesg=([0-9]+)", f.read())
    c = int(m[-1]) if m else 0
    if c >= n:
        break
    if time.time() - t0 > timeout:
        print("relay.sh: timeout: %d of %d messages reached the sink" % (c, n), file=sys.stderr)
        break
    time.sleep(0.01)
if c > n:
    print("relay.sh: %d messages reached the sink for %d sent (duplicates)" % (c, n), file=sys.stderr)
print("%.3f" % (time.time() - t0))
PY
}
start_sink() { # $1: name; sets SINKPORT
    SINKPORT=$(port)
    setsid /usr/sbin/smtp-sink -c -u nobody "127.0.0.1:$SINKPORT" 256 > "$root/$1.count" 2>&1 &
    pids="$pids $!"
    wait_port "$SINKPORT"
}
source_run() { # $1: port
    /usr/sbin/smtp-source -s "$S" -m "$N" -l "$SIZE" -f sender@relay.test -t rcpt@dest.test "127.0.0.1:$1" \
        || echo "relay.sh: smtp-source reported errors" >&2
}

ours() {
    for b in smtpd-rs queue-inject queue-run smtp-remote; do
        [ -x "$BIN/$b" ] || die "missing $BIN/$b: run make (after the branches that build it are merged)"
    done
    start_sink ours
    mkdir -p "$root/q"
    printf ':127.0.0.1:%s\n' "$SINKPORT" > "$root/smtproutes"
    in=$(port)
    if [ "$FRONT" = tcpserver ]; then
        front="tcpserver -c $((S + 10)) -RHl0 127.0.0.1 $in"
    else
        # As make run: hand-off workers, each serving up to 100 sessions.
        front="$BIN/smtpd-supervise -W -m 100 -c $((S + 10)) -C $((S + 10)) 127.0.0.1 $in"
    fi
    env PATH="$BIN:$PATH" QUEUE_DIR="$root/q" RELAYCLIENT= SMTPD_HOSTNAME=relay.test \
        setsid $front "$BIN/smtpd-rs" 2> "$root/smtpd.log" &
    pids="$pids $!"
    env QUEUE_DIR="$root/q" SMTPROUTES="$root/smtproutes" HELOHOST=relay.test \
        SMTP_REMOTE="$BIN/smtp-remote" QMAILQUEUE="$BIN/queue-inject" \
        CONCURRENCY="${RELAY_CONCURRENCY:-20}" CONCURRENCY_DOMAIN="${RELAY_CONCURRENCY_DOMAIN:-20}" \
        setsid "$BIN/queue-run" 2> "$root/queue-run.log" &
    pids="$pids $!"
    wait_port "$in"
    t0=$(now)
    source_run "$in"
    OURS_IN=$(awk -v a="$(now)" -v b="$t0" 'BEGIN { printf "%.3f\n", a - b }')
    OURS=$(wait_sink "$root/ours.count" "$t0")
    left=$(ls "$root/q/new" | wc -l)
    [ "$left" = 0 ] || echo "relay.sh: $left messages still in our queue" >&2
}

postfix_relay() {
    start_sink postfix
    d="$root/pf"
    mkdir -p "$d/etc" "$d/queue" "$d/data"
    chown postfix "$d/data"
    in=$(port)
    cat > "$d/etc/main.cf" <<EOT
# A private Postfix relaying everything to the sink; never the system instance.
compatibility_level = 3.6
queue_directory = $d/queue
data_directory = $d/data
mail_owner = postfix
setgid_group = postdrop
myhostname = relay.test
mydomain = test
myorigin = relay.test
mydestination =
relayhost = [127.0.0.1]:$SINKPORT
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject
smtpd_recipient_restrictions =
smtpd_peername_lookup = no
smtp_tls_security_level = none
maillog_file = $d/maillog
maillog_file_prefixes = $d
alias_maps =
alias_database =
local_recipient_maps =
biff = no
default_process_limit = 100
EOT
    cat > "$d/etc/master.cf" <<EOT
127.0.0.1:$in inet n - n - - smtpd
cleanup   unix  n - n - 0 cleanup
qmgr      unix  n - n 300 1 qmgr
rewrite   unix  - - n - - trivial-rewrite
bounce    unix  - - n - 0 bounce
defer     unix  - - n - 0 bounce
trace     unix  - - n - 0 bounce
verify    unix  - - n - 1 verify
flush     unix  n - n 1000? 0 flush
proxymap  unix  - - n - - proxymap
smtp      unix  - - n - - smtp
relay     unix  - - n - - smtp
error     unix  - - n - - error
retry     unix  - - n - - error
discard   unix  - - n - - discard
anvil     unix  - - n - 1 anvil
scache    unix  - - n - 1 scache
postlog   unix-dgram n - n - 1 postlogd
EOT
    /usr/sbin/postfix -c "$d/etc" start >/dev/null 2>&1 || die "private postfix did not start; see $d/maillog"
    wait_port "$in"
    t0=$(now)
    source_run "$in"
    PF_IN=$(awk -v a="$(now)" -v b="$t0" 'BEGIN { printf "%.3f\n", a - b }')
    PF=$(wait_sink "$root/postfix.count" "$t0")
}

rate() { awk -v n="$N" -v s="$1" 'BEGIN { printf "%.1f\n", n / s }'; }
echo "relay: $N messages of $SIZE bytes, $S sessions"
OURS=""; PF=""
[ "$ONLY" = postfix ] || ours
[ "$ONLY" = ours ] || postfix_relay
printf '%-34s %10s %10s\n' chain seconds msgs/s
[ -z "$OURS" ] || printf '%-34s %10.2f %10s\n' "smtpd-rs ($FRONT) ... smtp-remote" "$OURS" "$(rate "$OURS")"
[ -z "$PF" ] || printf '%-34s %10.2f %10s\n' "postfix (smtpd, qmgr, smtp)" "$PF" "$(rate "$PF")"
# When smtp-source was done (everything received and queued): what is left
# of the total is the delivery catching up.
[ -z "$OURS" ] || echo "ours: all received after $OURS_IN s, all delivered after $OURS s"
[ -z "$PF" ] || echo "postfix: all received after $PF_IN s, all delivered after $PF s"
if [ -n "$OURS" ] && [ -n "$PF" ]; then
    echo "ratio ours/postfix: $(awk -v p="$PF" -v o="$OURS" 'BEGIN { printf "%.2f\n", p / o }')x"
fi
