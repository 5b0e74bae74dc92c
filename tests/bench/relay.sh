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
# one process per connection), RELAY_DKIM (signing modes of queue-run to
# run our chain with, one after the other, each from a fresh queue: none,
# ed25519, rsa (RSA-2048), e.g. "none ed25519 rsa"; default none alone; a
# mode given more than once also gets the median of its rates against the
# run of none before each),
# RELAY_DKIM_BIG (MB: also sign one message of that size and print
# queue-run's peak RSS and times; default 0: not done), RELAY_DOMAINS
# (destination domains, default 1: every message to rcpt@dest.test; n > 1:
# d0.test ... d<n-1>.test, N/n messages each, sent by 10 groups of
# smtp-source runs in parallel, each group going through its share of the
# domains one after the other with 2 sessions, so that 20 sessions of mixed
# domains arrive at once; each domain has its own smtproutes line to the
# sink, and Postfix its own transport_maps line), RELAY_SINKS (sinks, default
# 1: domain k goes to sink k mod n, each on its own port), RELAY_REUSE
# (queue-run's CONNECTION_REUSE_COUNT, default unset: its default),
# RELAY_PERF (1: run each chain's parts under perf stat, which follows their
# children, and print the CPU each part took per message: ours receiving
# (smtpd-supervise, smtpd-rs, queue-inject), ours delivering (queue-run,
# smtp-remote), Postfix (every daemon of its master, started by postfix
# start-fg); the sinks and smtp-source are in neither).
# Quick check: tests/bench/relay.sh 20 2
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
DKIM=${RELAY_DKIM:-none}
BIG=${RELAY_DKIM_BIG:-0}
DOMAINS=${RELAY_DOMAINS:-1}
PERF=${RELAY_PERF:-}
[ -z "$PERF" ] || command -v perf >/dev/null || die "RELAY_PERF: missing perf (Debian package linux-perf)"
SINKS=${RELAY_SINKS:-1}

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
# wait_sink NAME T0: until the sinks of chain NAME counted N messages (or
# TIMEOUT); prints the seconds since T0. One python process polls the end of
# each sink's file every 10 ms (a shell loop of tr and sed forked about 60
# processes a second and took CPU from the chain it was timing).
wait_sink() {
    /usr/bin/python3 - "$root/$1" "$2" "$N" "$TIMEOUT" "$SINKS" <<'PY'
import re, sys, time
base, t0, n, timeout, sinks = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5])
def last(path):
    with open(path, "rb") as f:
        f.seek(0, 2)
        f.seek(max(0, f.tell() - 256))
        m = re.findall(rb"mesg=([0-9]+)", f.read())
    return int(m[-1]) if m else 0
c = 0
while True:
    c = sum(last("%s.%d.count" % (base, k)) for k in range(sinks))
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
start_sink() { # $1: name; sets SINKPORT (the first sink's) and SINKPORTS (all, in order)
    SINKPORTS=""
    k=0
    while [ $k -lt "$SINKS" ]; do
        p=$(port)
        setsid /usr/sbin/smtp-sink -c -u nobody "127.0.0.1:$p" 256 > "$root/$1.$k.count" 2>&1 &
        pids="$pids $!"
        wait_port "$p"
        SINKPORTS="$SINKPORTS $p"
        k=$((k + 1))
    done
    SINKPORT=${SINKPORTS# }
    SINKPORT=${SINKPORT%% *}
}
# routes FORMAT: one line per domain, FORMAT with %d the domain number, %s
# its sink's port (domain k: sink k mod RELAY_SINKS).
routes() {
    fmt=$1
    k=0
    while [ $k -lt "$DOMAINS" ]; do
        set -- $SINKPORTS
        i=$((k % SINKS)); while [ $i -gt 0 ]; do shift; i=$((i - 1)); done
        printf "$fmt" "$k" "$1"
        k=$((k + 1))
    done
}
source_run() { # $1: port
    if [ "$DOMAINS" = 1 ]; then
        /usr/sbin/smtp-source -s "$S" -m "$N" -l "$SIZE" -f sender@relay.test -t rcpt@dest.test "127.0.0.1:$1" \
            || echo "relay.sh: smtp-source reported errors" >&2
        return
    fi
    # 10 groups at once, each through its share of the domains in turn.
    per=$((N / DOMAINS))
    groups=""
    g=0
    while [ $g -lt 10 ]; do
        (
            k=$g
            while [ $k -lt "$DOMAINS" ]; do
                /usr/sbin/smtp-source -s 2 -m "$per" -l "$SIZE" -f sender@relay.test -t "rcpt@d$k.test" "127.0.0.1:$1" \
                    || echo "relay.sh: smtp-source reported errors" >&2
                k=$((k + 10))
            done
        ) &
        groups="$groups $!"
        g=$((g + 1))
    done
    for p in $groups; do wait "$p" || true; done
}

# dkim_setup: keys and the signing tables (one per mode) for relay.test,
# the domain of smtp-source's From: and envelope sender.
dkim_setup() {
    mkdir -p "$root/dkim"
    openssl genpkey -algorithm ed25519 -out "$root/dkim/ed.pem" 2>/dev/null || die "openssl genpkey failed"
    openssl genrsa -out "$root/dkim/rsa.pem" 2048 2>/dev/null || die "openssl genrsa failed"
    chmod 600 "$root/dkim/"*.pem
    echo "relay.test ed ed.pem" > "$root/dkim/ed25519"
    echo "relay.test rsa rsa.pem" > "$root/dkim/rsa"
    printf 'relay.test ed ed.pem\nrelay.test rsa rsa.pem\n' > "$root/dkim/both"
}
# dkim_env MODE: the variable that makes queue-run sign in MODE.
dkim_env() {
    case $1 in
    none) echo "DKIM_SIGN=" ;;
    ed25519|rsa|both) echo "DKIM_SIGN=$root/dkim/$1" ;;
    *) die "RELAY_DKIM: unknown mode $1 (none, ed25519, rsa, both)" ;;
    esac
}
# cpu_ticks PID: user + system CPU of a process so far, in clock ticks.
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
# perf_run FILE: the words that run a command under perf stat into FILE (none without RELAY_PERF).
perf_run() { [ -z "$PERF" ] || echo "perf stat -x, -e task-clock,context-switches -o $1 --"; }
# perf_us FILE: task-clock of FILE in microseconds per message.
perf_us() { awk -F, -v n="$N" '$3 == "task-clock" { printf "%.0f", $1 * 1000 / n }' "$1" 2>/dev/null; }
# stop_perf PID...: SIGTERM to what each perf stat runs, so that it exits
# and perf prints; then wait for them.
stop_perf() {
    for p in "$@"; do
        for c in $(pgrep -P "$p"); do kill -TERM "$c" 2>/dev/null || true; done
    done
    i=0
    for p in "$@"; do
        while kill -0 "$p" 2>/dev/null && [ $i -lt 100 ]; do i=$((i + 1)); sleep 0.1; done
    done
}
kill_chain() {
    for p in $pids; do kill -9 -- "-$p" 2>/dev/null || kill -9 "$p" 2>/dev/null || true; done
    pids=""
}

ours() { # $1: DKIM mode
    for b in smtpd-rs queue-inject queue-run smtp-remote; do
        [ -x "$BIN/$b" ] || die "missing $BIN/$b: run make (after the branches that build it are merged)"
    done
    start_sink "ours-$1"
    rm -rf "$root/q"
    mkdir -p "$root/q"
    if [ "$DOMAINS" = 1 ]; then
        printf ':127.0.0.1:%s\n' "$SINKPORT" > "$root/smtproutes"
    else
        routes 'd%d.test:127.0.0.1:%s\n' > "$root/smtproutes"
    fi
    in=$(port)
    if [ "$FRONT" = tcpserver ]; then
        front="tcpserver -c $((S + 10)) -RHl0 127.0.0.1 $in"
    else
        # As make run: hand-off workers, each serving up to 100 sessions.
        front="$BIN/smtpd-supervise -W -m 100 -c $((S + 10)) -C $((S + 10)) 127.0.0.1 $in"
    fi
    env PATH="$BIN:$PATH" QUEUE_DIR="$root/q" RELAYCLIENT= SMTPD_HOSTNAME=relay.test \
        setsid $(perf_run "$root/perf-in.txt") $front "$BIN/smtpd-rs" 2> "$root/smtpd.log" &
    fr=$!
    pids="$pids $fr"
    env QUEUE_DIR="$root/q" SMTPROUTES="$root/smtproutes" HELOHOST=relay.test \
        SMTP_REMOTE="$BIN/smtp-remote" QMAILQUEUE="$BIN/queue-inject" \
        CONCURRENCY="${RELAY_CONCURRENCY:-20}" CONCURRENCY_DOMAIN="${RELAY_CONCURRENCY_DOMAIN:-20}" \
        ${RELAY_REUSE:+CONNECTION_REUSE_COUNT=$RELAY_REUSE} \
        $(dkim_env "$1") setsid $(perf_run "$root/perf-out.txt") "$BIN/queue-run" 2> "$root/queue-run-$1.log" &
    qr=$!
    pids="$pids $qr"
    wait_port "$in"
    t0=$(now)
    source_run "$in"
    OURS_IN=$(awk -v a="$(now)" -v b="$t0" 'BEGIN { printf "%.3f\n", a - b }')
    OURS=$(wait_sink "ours-$1" "$t0")
    # The sink has counted them all; queue-run records the last reports.
    i=0
    while [ -n "$(ls "$root/q/new")" ] && [ $i -lt 50 ]; do i=$((i + 1)); sleep 0.1; done
    QR_TICKS=$(cpu_ticks "$qr")
    signed=$(grep -c ': DKIM signed: ' "$root/queue-run-$1.log" || true)
    [ "$1" = none ] || [ "$signed" = "$N" ] || echo "relay.sh: $signed of $N messages signed ($1)" >&2
    left=$(ls "$root/q/new" | wc -l)
    [ "$left" = 0 ] || echo "relay.sh: $left messages still in our queue" >&2
    # smtp-sink counts a session when it ends: after the idle connections
    # are closed (CONNECTION_IDLE_TIME, 2 s).
    sleep 3
    OURS_CONNS=$(sessions "ours-$1")
    if [ -n "$PERF" ]; then
        stop_perf "$fr" "$qr"
        PERF_IN=$(perf_us "$root/perf-in.txt")
        PERF_OUT=$(perf_us "$root/perf-out.txt")
    fi
    # This chain goes, so that the next run starts from nothing.
    kill_chain
}

# big_rss MB: one message of MB megabytes put into the queue by queue-inject,
# signed (Ed25519 and RSA-2048) and sent by queue-run to a sink; prints
# queue-run's peak RSS (VmHWM), its CPU, and when it was signed and sent.
big_rss() {
    start_sink big
    rm -rf "$root/q"
    mkdir -p "$root/q"
    printf ':127.0.0.1:%s\n' "$SINKPORT" > "$root/smtproutes"
    /usr/bin/python3 - "$1" "$root/big.msg" "$root/big.env" <<'PY'
import sys
line = "The quick brown fox jumps over the lazy dog, again and again.  \n"
with open(sys.argv[2], "w") as f:
    f.write("From: <sender@relay.test>\nTo: <rcpt@dest.test>\nSubject: big\n\n")
    f.write(line * (int(sys.argv[1]) * 1024 * 1024 // len(line)))
with open(sys.argv[3], "wb") as f:
    f.write(b"Fsender@relay.test\0Trcpt@dest.test\0\0")
PY
    # queue-inject: the message on fd 0, the envelope on fd 1.
    QUEUE_DIR="$root/q" "$BIN/queue-inject" < "$root/big.msg" 1< "$root/big.env" || die "queue-inject refused the big message"
    rm -f "$root/big.msg"
    t0=$(now)
    env QUEUE_DIR="$root/q" SMTPROUTES="$root/smtproutes" HELOHOST=relay.test \
        SMTP_REMOTE="$BIN/smtp-remote" QMAILQUEUE="$BIN/queue-inject" DKIM_SIGN="$root/dkim/both" \
        setsid "$BIN/queue-run" 2> "$root/queue-run-big.log" &
    qr=$!
    pids="$pids $qr"
    i=0
    until grep -q 'DKIM signed' "$root/queue-run-big.log" 2>/dev/null; do
        i=$((i + 1)); [ $i -lt 3000 ] || die "the big message was not signed"; sleep 0.05
    done
    t_sign=$(awk -v a="$(now)" -v b="$t0" 'BEGIN { printf "%.2f\n", a - b }')
    i=0
    until [ -z "$(ls "$root/q/new")" ]; do
        i=$((i + 1)); [ $i -lt 6000 ] || die "the big message was not delivered"; sleep 0.1
    done
    t_sent=$(awk -v a="$(now)" -v b="$t0" 'BEGIN { printf "%.2f\n", a - b }')
    hwm=$(awk '/^VmHWM:/ { print $2 }' "/proc/$qr/status")
    cpu=$(awk -v t="$(cpu_ticks "$qr")" -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%.2f", t / hz }')
    echo "queue-run, one $1 MB message signed with Ed25519 and RSA-2048: peak RSS $hwm kB, CPU $cpu s; signed after $t_sign s, delivered after $t_sent s"
    kill_chain
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
transport_maps = texthash:$d/etc/transport
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
    # Every domain to its sink (RELAY_DOMAINS > 1), as smtproutes does for ours.
    if [ "$DOMAINS" = 1 ]; then : > "$d/etc/transport"; else routes 'd%d.test smtp:[127.0.0.1]:%s\n' > "$d/etc/transport"; fi
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
    if [ -n "$PERF" ]; then
        # In the foreground, so that perf stat follows master and its daemons.
        setsid $(perf_run "$root/perf-pf.txt") /usr/sbin/postfix -c "$d/etc" start-fg >/dev/null 2>&1 &
        pfp=$!
    else
        /usr/sbin/postfix -c "$d/etc" start >/dev/null 2>&1 || die "private postfix did not start; see $d/maillog"
    fi
    wait_port "$in"
    t0=$(now)
    source_run "$in"
    PF_IN=$(awk -v a="$(now)" -v b="$t0" 'BEGIN { printf "%.3f\n", a - b }')
    PF=$(wait_sink postfix "$t0")
    # smtp-sink counts a session when it ends: after the idle connections
    # are closed (2 s for both chains).
    sleep 3
    PF_CONNS=$(sessions postfix)
    if [ -n "$PERF" ]; then
        /usr/sbin/postfix -c "$d/etc" stop >/dev/null 2>&1 || true
        stop_perf "$pfp"
        PERF_PF=$(perf_us "$root/perf-pf.txt")
    fi
}
# sessions NAME: the connections the sinks of chain NAME saw (smtp-sink -c's sess=).
sessions() {
    n=0
    k=0
    while [ $k -lt "$SINKS" ]; do
        c=$(tr '\r' '\n' < "$root/$1.$k.count" | sed -n 's/.*sess=\([0-9]*\).*/\1/p' | tail -1)
        n=$((n + ${c:-0}))
        k=$((k + 1))
    done
    echo "$n"
}

rate() { awk -v n="$N" -v s="$1" 'BEGIN { printf "%.1f\n", n / s }'; }
[ "$DOMAINS" -ge 1 ] && [ $((N % DOMAINS)) = 0 ] || die "RELAY_DOMAINS must divide the number of messages"
[ "$DOMAINS" = 1 ] || [ "$S" = 20 ] || echo "relay.sh: with RELAY_DOMAINS the sessions are 10 groups of 2" >&2
echo "relay: $N messages of $SIZE bytes, $S sessions, $DOMAINS domains, $SINKS sinks"
OURS=""; PF=""; results=""
if [ "$DKIM" != none ] || [ "$BIG" != 0 ]; then dkim_setup; fi
if [ "$ONLY" != postfix ]; then
    for mode in $DKIM; do
        ours "$mode"
        results="$results $mode:$OURS:$OURS_IN:$QR_TICKS"
    done
fi
[ "$ONLY" = ours ] || postfix_relay
printf '%-52s %10s %10s\n' chain seconds msgs/s
for r in $results; do
    set -- $(echo "$r" | tr : ' ')
    label="smtpd-rs ($FRONT) ... smtp-remote"
    [ "$1" = none ] || label="$label, DKIM $1"
    printf '%-52s %10.2f %10s\n' "$label" "$2" "$(rate "$2")"
    OURS=$2
done
[ -z "$PF" ] || printf '%-52s %10.2f %10s\n' "postfix (smtpd, qmgr, smtp)" "$PF" "$(rate "$PF")"
# When smtp-source was done (everything received and queued): what is left
# of the total is the delivery catching up. queue-run's own CPU per message
# shows what signing adds to it (reading the message again, hashing, the
# signature, the longer attribute block).
hz=$(getconf CLK_TCK)
base=""
ratios=""
for r in $results; do
    set -- $(echo "$r" | tr : ' ')
    cpu=$(awk -v t="$4" -v hz="$hz" -v n="$N" 'BEGIN { printf "%.0f", t / hz / n * 1e6 }')
    line="ours ($1): all received after $3 s, all delivered after $2 s; queue-run CPU $cpu us per message"
    if [ "$1" = none ]; then
        base=$2; base_cpu=$cpu
    elif [ -n "$base" ]; then
        ratio=$(awk -v b="$base" -v o="$2" 'BEGIN { printf "%.2f", b / o }')
        ratios="$ratios $1:$ratio"
        line="$line ($(awk -v a="$cpu" -v b="$base_cpu" 'BEGIN { printf "%+.0f", a - b }') us against none), rate ${ratio}x of none"
    fi
    echo "$line"
done
# With each mode run more than once (RELAY_DKIM="none ed25519 none ed25519
# ..."), the median of its rates against the run of none before it.
for m in $(for r in $ratios; do echo "${r%%:*}"; done | sort -u); do
    set -- $(for r in $ratios; do [ "${r%%:*}" = "$m" ] && echo "${r#*:}"; done | sort -n)
    [ $# -gt 1 ] || continue
    echo "DKIM $m: median rate $(echo "$@" | awk '{ n = NF; if (n % 2) print $((n + 1) / 2); else printf "%.2f", ($(n / 2) + $(n / 2 + 1)) / 2 }')x of none over $# pairs ($*)"
done
[ -z "$PF" ] || echo "postfix: all received after $PF_IN s, all delivered after $PF s"
[ -z "$OURS" ] || echo "connections at the sinks: ours ${OURS_CONNS:-?}${PF:+, postfix $PF_CONNS}"
[ -z "$PERF" ] || echo "CPU per message (perf stat task-clock): ours receiving ${PERF_IN:-?} us, delivering ${PERF_OUT:-?} us${PF:+; postfix ${PERF_PF:-?} us}"
if [ -n "$OURS" ] && [ -n "$PF" ]; then
    echo "ratio ours/postfix: $(awk -v p="$PF" -v o="$OURS" 'BEGIN { printf "%.2f\n", p / o }')x"
fi
[ "$BIG" = 0 ] || [ "$ONLY" = postfix ] || big_rss "$BIG"
