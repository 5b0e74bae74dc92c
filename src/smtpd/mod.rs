//! smtpd-rs, the SMTP server session (smtpd-rs(8)): the session state machine
//! (pure), the recipient policy, AUTH, the Received header, checkpassword, the
//! serve loop over a connection, and the hand-off worker. Below it: the pure
//! SMTP parsers (`smtp`), the connection adapters (`io`), the queue client
//! (`queue::client`).

pub mod auth;
pub mod checkpassword;
pub mod config;
pub mod policy;
pub mod received;
pub mod serve;
pub mod session;
pub mod worker;
