//! The SMTP protocol pieces of smtpd-rs: command parser, reply texts and the
//! DATA/BDAT decoder. All pure: bytes in, values out, no I/O here.

pub mod command;
pub mod data;
pub mod reply;
