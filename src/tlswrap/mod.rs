//! tls-wrap: TLS for the program it runs, over UCSPI-TLS (STARTTLS on the
//! application's request) or at once (implicit TLS, -i). The only server
//! program that links rustls; it holds the key, the application never does.

pub mod certs;
pub mod config;
pub mod envblock;
pub mod relay;
pub mod run;
