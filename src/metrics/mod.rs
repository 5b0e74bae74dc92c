//! The suite's two observation programs, neither on any mail path:
//! metrics-http, a UCSPI program (under tcpserver or smtpd-supervise) that
//! answers one HTTP GET of the metrics path with the metrics textfiles
//! that smtpd-supervise (-M) and queue-run (METRICS_FILE) keep current,
//! merged; and smtpd-supervise-status, which prints a supervisor's
//! scoreboard (-L, `crate::scoreboard`) for people or for programs.
//! Pure: http (request heads, responses), merge (expositions), status
//! (the scoreboard's forms). I/O: serve (metrics-http's one request).

pub mod http;
pub mod merge;
pub mod serve;
pub mod status;
