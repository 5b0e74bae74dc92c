#!/bin/sh
# Implicit-TLS handshakes per second through tls-wrap + an application, side
# by side with stunnel4 wrapping the same application (as a daemon, and in
# inetd mode under tcpserver, tls-wrap's own process model), in one run;
# then the memory of one tls-wrap + application pair. Public tools only: tcpserver
# (ucspi-tcp), stunnel4, openssl s_time, openssl s_client.
#
#   sh tests/bench/tls.sh [seconds [app args...]]
#
# seconds: length of each s_time run (default 10; 1 checks that it works).
# app: the wrapped program (default: smtpd-rs from bin/ or target/release/
# if built, else cat). TLS_WRAP=path picks the tls-wrap binary (default
# bin/tls-wrap, then target/release/tls-wrap). KEY=rsa uses an RSA-2048
# certificate instead of ECDSA P-256. Loopback only; everything it starts is
# stopped on exit.
set -eu
SECS=${1:-10}
[ $# -gt 0 ] && shift
top=$(cd "$(dirname "$0")/../.." && pwd)
for p in tcpserver:ucspi-tcp stunnel4:stunnel4 openssl:openssl; do
  command -v "${p%%:*}" >/dev/null || { echo "tls.sh: ${p%%:*} missing: install the Debian package ${p#*:}" >&2; exit 111; }
done
TLS_WRAP=${TLS_WRAP:-}
[ -n "$TLS_WRAP" ] || for b in "$top/bin/tls-wrap" "$top/target/x86_64-unknown-linux-gnu/release/tls-wrap" "$top/target/release/tls-wrap"; do [ -x "$b" ] && { TLS_WRAP=$b; break; }; done
[ -n "$TLS_WRAP" ] || { echo "tls.sh: build first (make)" >&2; exit 111; }
if [ $# -eq 0 ]; then
  app=
  for b in "$top/bin/smtpd-rs" "$top/target/x86_64-unknown-linux-gnu/release/smtpd-rs" "$top/target/release/smtpd-rs"; do [ -x "$b" ] && { app=$b; break; }; done
  if [ -n "$app" ]; then set -- "$app"; else set -- "$(command -v cat)"; fi
fi
APP=$1; shift
APPARGS="$*"

work=$(mktemp -d)
pids=
cleanup() {
  for p in $pids; do kill "$p" 2>/dev/null || true; done
  for p in $pids; do wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

if [ "${KEY:-ecdsa}" = rsa ]; then newkey="-newkey rsa:2048"; else newkey="-newkey ec -pkeyopt ec_paramgen_curve:P-256"; fi
# shellcheck disable=SC2086
openssl req -x509 -nodes -days 2 -subj /CN=localhost $newkey -keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null

port() { # a free loopback port
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
P1=$(port); P2=$(port); P3=$(port); P4=$(port)

# A queue and a name for smtpd-rs (the wrapped app under both wrappers).
mkdir -p "$work/queue/tmp" "$work/queue/new"
export QUEUE_DIR="$work/queue" SMTPD_HOSTNAME=bench.test

# tls-wrap under tcpserver (one process pair per connection).
CERTFILE=$work/cert.pem KEYFILE=$work/key.pem \
  tcpserver -R -H -l localhost -c 200 127.0.0.1 "$P1" "$TLS_WRAP" -i "$APP" $APPARGS 2>"$work/tcpserver.log" &
pids="$pids $!"

# stunnel4, exec'ing the same application per connection.
cat >"$work/stunnel.conf" <<CONF
foreground = yes
pid =
debug = 3
output = $work/stunnel.log
[bench]
accept = 127.0.0.1:$P2
cert = $work/cert.pem
key = $work/key.pem
exec = $APP
execArgs = $(basename "$APP") $APPARGS
CONF
stunnel4 "$work/stunnel.conf" >/dev/null 2>&1 &
pids="$pids $!"

wait_port() {
  i=0
  while ! python3 -c "import socket,sys; socket.create_connection(('127.0.0.1',$1),1)" 2>/dev/null; do
    i=$((i+1)); [ $i -lt 50 ] || { echo "tls.sh: nothing listens on $1" >&2; exit 111; }
    sleep 0.1
  done
}
# stunnel4 in inetd mode under tcpserver: the same process model as
# tls-wrap (one wrapper process per connection), for comparison.
cat >"$work/stunnel-inetd.conf" <<CONF
foreground = yes
pid =
debug = 3
output = $work/stunnel-inetd.log
cert = $work/cert.pem
key = $work/key.pem
exec = $APP
execArgs = $(basename "$APP") $APPARGS
CONF
tcpserver -R -H -l localhost -c 200 127.0.0.1 "$P3" stunnel4 "$work/stunnel-inetd.conf" 2>/dev/null &
pids="$pids $!"

# tls-wrap as a hand-off worker under smtpd-supervise -W: keys loaded and the
# process waiting before the connection arrives (the stunnel-daemon shape).
SUPERVISE=${SUPERVISE:-$(dirname "$TLS_WRAP")/smtpd-supervise}
if [ -x "$SUPERVISE" ]; then
  CERTFILE=$work/cert.pem KEYFILE=$work/key.pem \
    "$SUPERVISE" -W -c 200 -C 200 127.0.0.1 "$P4" "$TLS_WRAP" -i "$APP" $APPARGS 2>"$work/supervise.log" &
  pids="$pids $!"
fi

wait_port "$P1"; wait_port "$P2"; wait_port "$P3"; [ -x "$SUPERVISE" ] && wait_port "$P4"

rate() { # openssl s_time: full handshakes (-new), report connections per real second
  openssl s_time -connect "127.0.0.1:$1" -new -time "$SECS" 2>/dev/null |
    awk '/connections in [0-9.]+ real seconds/ { n=$1; t=$4; printf "%.1f", (t>0 ? n/t : 0) } /connections in .*s;/ && !seen { seen=1 }'
}
echo "app: $APP $APPARGS; key: ${KEY:-ecdsa}; $SECS s per run"
r1=$(rate "$P1"); r2=$(rate "$P2"); r3=$(rate "$P3"); r4=; [ -x "$SUPERVISE" ] && r4=$(rate "$P4")
echo "handshakes/s  tls-wrap (tcpserver): ${r1:-?}  tls-wrap (smtpd-supervise -W): ${r4:-?}  stunnel4 (daemon): ${r2:-?}  stunnel4 (inetd, tcpserver): ${r3:-?}"

# Memory of one tls-wrap + application pair, with a TLS session open.
( sleep 3 ) | openssl s_client -connect "127.0.0.1:$P1" -quiet -no_ign_eof >/dev/null 2>&1 &
cpid=$!
sleep 1
tw=$(pgrep -n -f "$TLS_WRAP -i" || true)
if [ -n "$tw" ]; then
  ch=$(pgrep -P "$tw" | head -1 || true)
  kb() { awk '/^(Rss|Pss):/ { sub(":", "", $1); printf "%s=%s ", $1, $2 }' "/proc/$1/smaps_rollup" 2>/dev/null; }
  echo "tls-wrap pid $tw: $(kb "$tw")kB; app pid ${ch:-?}: $( [ -n "$ch" ] && kb "$ch")kB"
else
  echo "tls-wrap pair: not found (connection ended early)"
fi
wait "$cpid" 2>/dev/null || true
