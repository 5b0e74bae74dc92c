//! smtpd-rs: a qmail-like suite of small SMTP programs over one library.
//! Pure modules (parsers, state machines) have no I/O; adapters live in io/.
#![deny(unsafe_code)]

pub mod auth;
pub mod checkpassword;
pub mod die;
pub mod envelope;
pub mod io;
pub mod netstring;
pub mod sys;
pub mod tlswrap;
pub mod xtext;
