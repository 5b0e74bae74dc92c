//! smtpd-rs: a qmail-like suite of small SMTP programs over one library.
//! Pure modules (parsers, state machines) have no I/O; adapters live in io/.
#![deny(unsafe_code)]

pub mod authcheck;
pub mod checkpw;
pub mod conflines;
pub mod date;
pub mod der;
pub mod deliver;
pub mod die;
pub mod dkim;
pub mod dns;
pub mod envelope;
pub mod envfile;
pub mod handoff;
pub mod host;
pub mod io;
pub mod metrics;
pub mod netstring;
pub mod passwd;
pub mod proxy;
pub mod scoreboard;
pub mod queue;
pub mod remotejob;
pub mod remote;
pub mod smtp;
pub mod statsfd;
pub mod smtpd;
pub mod supervise;
pub mod sys;
pub mod systemd;
pub mod tcprules;
pub mod textfile;
pub mod tlswrap;
pub mod xtext;
pub mod queuerun;
