#!/bin/sh
# Install the Debian packages that the tests drive as real peers.
#
#   sh tests/install-peers.sh        install only what is missing (quick when all is there)
#   sh tests/install-peers.sh --ci   apt-get update and install everything (fresh CI machine)
#
# Idempotent. As root it installs with apt-get; otherwise it prints the command
# to run and exits 1 (SKIP_PEERS=1 skips the check; tests needing a missing
# peer then fail, each naming its package). Debian 12 (bookworm) package names.
set -eu

mode=${1:-}
missing=""

# need PACKAGE CHECK...: the package is missing when the check command fails.
need() {
	pkg=$1; shift
	if ! "$@" >/dev/null 2>&1; then
		case " $missing " in *" $pkg "*) ;; *) missing="$missing $pkg" ;; esac
	fi
}
have() { command -v "$1" || [ -x "$1" ]; }

need ucspi-tcp        have tcpserver
need ucspi-tcp        have tcprules
need swaks            have swaks
need libnet-ssleay-perl   perl -MNet::SSLeay -e 1
need libdigest-hmac-perl  perl -MDigest::HMAC_MD5 -e 1
need postfix          have /usr/sbin/smtp-source
need postfix          have /usr/sbin/smtp-sink
need postfix          have /usr/sbin/postfix
need python3          have /usr/bin/python3
need python3-aiosmtpd /usr/bin/python3 -c 'import aiosmtpd'
need python3-yaml     /usr/bin/python3 -c 'import yaml'      # reads the RFC 7208 SPF test suite
need python3-authres  /usr/bin/python3 -c 'import authres'   # parses our Authentication-Results back
need publicsuffix     test -r /usr/share/publicsuffix/public_suffix_list.dat   # the PSL the checker reads at run time
need python3-dkim     /usr/bin/python3 -c 'import dkim, nacl'   # dkimpy, with PyNaCl for ed25519 (tests/dkim_peers.rs)
need python3-dnspython /usr/bin/python3 -c 'import dns.message'   # the DNS servers of dkim_opendkim.py and tests/bench
need opendkim-tools   have /usr/sbin/opendkim-testmsg
need opendkim         have /usr/sbin/opendkim   # signs rsa-sha256 and ed25519-sha256 in its test mode (-t) for tests/authcheck_dkim.rs
need openssl          have openssl
need stunnel4         have stunnel4
need msmtp            have msmtp
need testssl.sh       have testssl
need nmap             have nmap
need time             have /usr/bin/time
need groff-base       have groff
need systemd          have systemd-socket-activate
need procps           have pgrep
need runit            have runsv      # conf-examples' runit service folders (chpst, svlogd)
need runit            have chpst
need runit            have svlogd
need s6               have s6-svscan  # conf-examples' s6 service folders (s6-setuidgid, s6-log)
need s6               have s6-setuidgid
need s6               have s6-log
need util-linux       have setpriv    # User=, NoNewPrivileges= of the example units
need passwd           have groupadd   # tests/queuerun_maildrop.rs: a throwaway drop group
need prometheus       have prometheus  # tests/metrics_prometheus.rs: a private instance scrapes the suite
need prometheus       have promtool    # promtool check metrics / check rules
need make             have make
need g++              have g++   # libfuzzer-sys compiles libFuzzer (make fuzz-short)
need dovecot-core     have /usr/sbin/dovecot    # LMTP and Maildir peer: a private instance (tests/deliver_*.rs)
need dovecot-core     have /usr/bin/doveadm
need dovecot-lmtpd    have /usr/lib/dovecot/lmtp

# cargo-fuzz (make fuzz-short, tests/fuzz.sh) is a cargo tool, not a Debian
# package: built for this user once cargo is on PATH (about 1.5 min here).
# On a fresh CI machine cargo arrives later: .ci/run calls this again.
if command -v cargo >/dev/null 2>&1 && ! cargo fuzz --version >/dev/null 2>&1; then
	echo "install-peers: installing cargo-fuzz (cargo install --locked)" >&2
	cargo install cargo-fuzz --locked
fi

if [ "$mode" = --ci ]; then
	# On a fresh machine install the whole list (apt-get skips what is there)
	# plus what the build needs.
	missing="ucspi-tcp swaks libnet-ssleay-perl libdigest-hmac-perl postfix python3 python3-aiosmtpd
	  python3-yaml python3-authres publicsuffix python3-dkim python3-dnspython opendkim-tools opendkim openssl
	  stunnel4 msmtp testssl.sh nmap time groff-base systemd procps runit s6 util-linux passwd prometheus
	  dovecot-core dovecot-lmtpd make
	  gcc g++ libc6-dev curl ca-certificates"
elif [ -z "$missing" ]; then
	exit 0
fi

if [ "$(id -u)" != 0 ]; then
	echo "install-peers: missing test peers; as root run:" >&2
	echo "  apt-get install$missing" >&2
	if [ -n "${SKIP_PEERS:-}" ]; then
		echo "install-peers: SKIP_PEERS set, going on; tests needing these will fail" >&2
		exit 0
	fi
	exit 1
fi

echo "install-peers: installing:" $missing >&2
export DEBIAN_FRONTEND=noninteractive

# No service may start during the install (containers, CI; and the tests
# never want the system Postfix running): policy-rc.d exits 101. Restore
# whatever was there before, on every exit.
policy=/usr/sbin/policy-rc.d
saved=""
if [ -e "$policy" ]; then
	saved=$(mktemp /tmp/policy-rc.d.XXXXXX)
	cp -p "$policy" "$saved"
fi
restore() {
	if [ -n "$saved" ]; then mv -f "$saved" "$policy"; else rm -f "$policy"; fi
}
trap restore EXIT
trap 'exit 1' INT TERM HUP
printf '#!/bin/sh\nexit 101\n' > "$policy"
chmod 755 "$policy"

# Postfix: install the programs only; no main.cf, no running system instance.
echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections

apt-get update
# --no-upgrade: only install what is missing, never upgrade what is there.
# shellcheck disable=SC2086 # word splitting of the package list is wanted
apt-get install -y --no-install-recommends --no-upgrade $missing </dev/null
