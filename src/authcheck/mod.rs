//! Inbound mail authentication, the pure parts of the checker's room.

pub mod dmarc;
pub mod psl;
pub mod spf;
#[cfg(test)]
pub(crate) mod testzone;
