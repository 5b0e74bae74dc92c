//! queue-run and sendmail: delivering the queue through smtp-remote, with
//! retries and DSNs, and a sendmail-style local injector.
//! Pure modules: state, backoff, report, dsn, plan, config, list, mailmsg, pickup.
//! I/O: store (the queue folders), inject (the qmail-queue protocol), runner,
//! metrics (its figures, written as a Prometheus textfile).

pub mod backoff;
pub mod config;
pub mod dsn;
pub mod inject;
pub mod list;
pub mod metrics;
pub mod mailmsg;
pub mod pickup;
pub mod plan;
// Kept smtp-remote -m processes (connections kept per destination).
pub mod pool;
pub mod report;
pub mod runner;
pub mod sendmail;
// DKIM signing of outbound mail: sign (I/O), signtable (its table, pure).
pub mod sign;
pub mod signtable;
pub mod state;
pub mod store;
