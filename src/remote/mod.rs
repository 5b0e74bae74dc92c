//! smtp-remote: deliver one message to one destination, report as qmail-remote.
//! Pure parts: `reply`, `report`, `routes`, `message`, `smtp`, `auth`, `dane`.
//! I/O parts: `conn` (one SMTP connection), `spool` (the message on stdin),
//! `multi` (the `-m` mode: jobs from queue-run over kept connections),
//! `tls` (rustls set-up), `deliver` (routing and the dialogue).

pub mod auth;
pub mod conn;
pub mod dane;
pub mod deliver;
pub mod message;
pub mod multi;
pub mod reply;
pub mod report;
pub mod routes;
pub mod smtp;
pub mod spool;
pub mod tls;
