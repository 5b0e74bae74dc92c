//! The SMTP protocol pieces of smtpd-rs: command parser, reply texts, the
//! DATA/BDAT decoder and the encoder of outgoing message lines. All pure: bytes in, values out, no I/O here.

pub mod command;
pub mod crlf;
pub mod data;
pub mod reply;
