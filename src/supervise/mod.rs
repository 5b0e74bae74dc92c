//! smtpd-supervise: bind, drop privileges, accept, apply rules and limits, and
//! run the session program per connection (fork+exec) or hand each connection to
//! a waiting worker (doc/PROTOCOLS.md section 4); watchdog, reload, drain.
//! Knows nothing about SMTP.

pub mod config;
pub mod log;
pub mod privs;
pub mod server;
pub mod stats;
