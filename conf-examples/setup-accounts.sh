#!/bin/sh
# The accounts and folders the conf-examples use, on Debian. Idempotent: run
# it again at any time; it creates what is missing, puts owners and modes
# back where they differ, and removes nothing.
#
#   sh conf-examples/setup-accounts.sh            as root: do it
#   sh conf-examples/setup-accounts.sh --dry-run  print what it would do, change nothing
#   ROOT=/mnt/image sh conf-examples/setup-accounts.sh
#                   the same under a prefix: ROOT/etc/passwd... (useradd --prefix),
#                   ROOT/var/..., for an image being built (or a test)
#
# Accounts (system accounts with their own group, no home, no login shell):
#   smtpd      the sessions (smtpd-rs, the queue-inject it starts, the
#              checkpassword it runs) and the queue: queue-run, smtp-remote
#              and queue-inject -c run as smtpd too
#   smtpd-tls  tls-wrap, once it has read the key (TLS_UID/TLS_GID in tls.env)
#   smtplog    the loggers of the runit and s6 services (svlogd, s6-log)
# A group with no members:
#   smtpd-drop queue-drop's group (make install installs queue-drop setgid to
#              it): local users' sendmail writes into the queue's maildrop/
#              through it, as Postfix's postdrop does (queue-drop(8))
# Folders and files:
#   /etc/smtpd-rs                        root:root 0755   the settings
#   /etc/smtpd-rs/passwd                 root:smtpd 0640  smtpd-checkpassword's users
#                                                         (created empty; smtpd-passwd fills it)
#   /var/spool/smtpd-rs, .../queue       smtpd:smtpd 0750 the queue (queue-inject
#                                                         and queue-run make tmp/, new/, ...)
#   .../queue/maildrop                   smtpd:smtpd-drop 1730  local submissions (queue-drop)
#   /var/log/smtpd-rs, /var/log/queue-run  smtplog:adm 0750  the runit and s6 logs
set -eu

ROOT=${ROOT:-}
dry=
case ${1:-} in
--dry-run|-n) dry=1 ;;
"") ;;
*) echo "usage: setup-accounts.sh [--dry-run]" >&2; exit 100 ;;
esac

say() { echo "setup-accounts: $*" >&2; }
# do CMD...: run it, or print it with --dry-run.
do_() {
	if [ -n "$dry" ]; then echo "$*"; else "$@"; fi
}

# The numeric id of a user or group, from ROOT/etc/passwd or ROOT/etc/group
# (so that a prefix has its own ids); empty when there is none.
uid_of() { awk -F: -v n="$1" '$1 == n { print $3; exit }' "$ROOT/etc/passwd" 2>/dev/null || true; }
gid_of() { awk -F: -v n="$1" '$1 == n { print $3; exit }' "$ROOT/etc/group" 2>/dev/null || true; }

prefix=
[ -n "$ROOT" ] && prefix="--prefix $ROOT"

account() { # NAME
	if [ -n "$(uid_of "$1")" ]; then
		return 0
	fi
	[ -n "$dry" ] || say "adding the system user $1"
	# shellcheck disable=SC2086 # $prefix is empty or two words
	do_ useradd $prefix --system --user-group --no-create-home \
		--home-dir /nonexistent --shell /usr/sbin/nologin "$1"
}

# path TYPE PATH USER GROUP MODE: make a folder (d) or an empty file (f)
# unless it is there, then set owner and mode where they differ. chown
# gets the names on this system, the prefix's numbers under ROOT.
path() {
	t=$1 p=$ROOT$2 m=$5
	u=$(uid_of "$3") g=$(gid_of "$4")
	ids=$u:$g
	if [ -n "$ROOT" ]; then o=${u:-$3}:${g:-$4}; else o=$3:$4; fi
	if [ "$t" = d ] && [ ! -d "$p" ]; then
		[ -n "$dry" ] || say "making $p"
		do_ mkdir -p "$p"
	elif [ "$t" = f ] && [ ! -e "$p" ]; then
		[ -n "$dry" ] || say "making $p"
		do_ touch "$p"
	fi
	if [ ! -e "$p" ] || [ "$(stat -c %u:%g "$p")" != "$ids" ]; then
		do_ chown "$o" "$p"
	fi
	if [ ! -e "$p" ] || [ "$(stat -c %a "$p")" != "${m#0}" ]; then
		do_ chmod "$m" "$p"
	fi
}

group() { # NAME
	if [ -n "$(gid_of "$1")" ]; then
		return 0
	fi
	[ -n "$dry" ] || say "adding the system group $1"
	# shellcheck disable=SC2086 # $prefix is empty or two words
	do_ groupadd $prefix --system "$1"
}

account smtpd
account smtpd-tls
account smtplog
group smtpd-drop

path d /etc/smtpd-rs root root 0755
path f /etc/smtpd-rs/passwd root smtpd 0640
path d /var/spool/smtpd-rs smtpd smtpd 0750
path d /var/spool/smtpd-rs/queue smtpd smtpd 0750
path d /var/spool/smtpd-rs/queue/maildrop smtpd smtpd-drop 1730
path d /var/log/smtpd-rs smtplog adm 0750
path d /var/log/queue-run smtplog adm 0750
