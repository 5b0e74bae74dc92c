//! The fixed replies of smtpd-rs, one const each, with their enhanced status
//! codes (RFC 2034, RFC 3463): every reply except the greeting and the
//! HELO/EHLO answers carries one. Replies with variable text are built in
//! session.rs from the same pieces. Pure data: no I/O here.

pub const OK: &str = "250 2.0.0 ok\r\n";
pub const MAIL_OK: &str = "250 2.1.0 sender ok\r\n";
pub const RCPT_OK: &str = "250 2.1.5 recipient ok\r\n";
pub const RSET_OK: &str = "250 2.0.0 flushed\r\n";
pub const GO_AHEAD: &str = "354 go ahead, end with <CRLF>.<CRLF>\r\n";
pub const BYE: &str = "221 2.0.0 closing connection\r\n";
pub const VRFY_MAYBE: &str = "252 2.1.5 cannot verify, but send some mail and I will try\r\n";

// Sequence (RFC 5321 4.1.4, 503).
pub const WANT_HELO: &str = "503 5.5.1 send EHLO or HELO first\r\n";
pub const WANT_MAIL: &str = "503 5.5.1 MAIL first\r\n";
pub const WANT_RCPT: &str = "503 5.5.1 RCPT first\r\n";
pub const NESTED_MAIL: &str = "503 5.5.1 MAIL already given; RSET first\r\n";
pub const NO_VALID_RCPT: &str = "554 5.5.1 no valid recipients\r\n";
pub const DATA_AFTER_BDAT: &str = "503 5.5.1 DATA not allowed after BDAT in one transaction\r\n";
pub const IN_TRANSACTION: &str = "503 5.5.1 mail transaction in progress\r\n";

// Syntax and bad input.
pub const UNKNOWN: &str = "500 5.5.1 unrecognized command\r\n";
pub const LINE_TOO_LONG: &str = "500 5.5.2 line too long (512 octets at most)\r\n";
pub const BARE_LF_CMD: &str =
    "500 5.5.2 bare LF in command; lines end in CRLF (see https://cr.yp.to/docs/smtplf.html)\r\n";
pub const BARE_CR_CMD: &str =
    "500 5.5.2 bare CR in command; lines end in CRLF (see https://cr.yp.to/docs/smtplf.html)\r\n";
pub const NUL_CMD: &str = "500 5.5.2 NUL octet in command\r\n";
pub const BAD_ARGS: &str = "501 5.5.4 invalid arguments\r\n";
pub const BAD_PATH: &str = "501 5.5.4 syntax: MAIL FROM:<address> or RCPT TO:<address>\r\n";
pub const BAD_PARAM: &str = "555 5.5.4 bad parameter syntax\r\n";
pub const UNKNOWN_PARAM: &str = "555 5.5.4 unsupported parameter\r\n";
pub const DUP_PARAM: &str = "501 5.5.4 parameter given twice\r\n";
pub const BAD_SIZE: &str = "501 5.5.4 SIZE must be a number\r\n";
pub const BAD_BODY: &str = "501 5.5.4 BODY must be 7BIT or 8BITMIME\r\n";
pub const BAD_DSN: &str = "501 5.5.4 invalid DSN parameter (RFC 3461)\r\n";
pub const BAD_BDAT: &str = "501 5.5.4 syntax: BDAT <size> [LAST]\r\n";
pub const BAD_HELO: &str = "501 5.5.4 HELO/EHLO needs a domain name or an address literal\r\n";
pub const BAD_SENDER: &str = "553 5.1.7 bad sender address syntax\r\n";
pub const BAD_RCPT: &str = "553 5.1.3 bad recipient address syntax\r\n";
pub const NEED_SMTPUTF8: &str = "553 5.6.7 non-ASCII address needs the SMTPUTF8 parameter\r\n";

// Refused on purpose.
pub const NOT_OFFERED: &str = "502 5.5.1 command not available here\r\n";
pub const STARTTLS_UNAVAILABLE: &str = "502 5.5.1 STARTTLS not available\r\n";
pub const AUTH_UNAVAILABLE: &str = "502 5.5.1 AUTH not available\r\n";

// Policy.
pub const HELO_UNRESOLVED: &str = "450 4.7.1 HELO/EHLO name does not resolve\r\n";
pub const NO_POLICY: &str =
    "553 5.7.1 no recipients accepted here: relaying denied (no RCPTHOSTS, RECIPIENTS, RCPTCHECK or RELAYCLIENT)\r\n";
pub const NOT_RCPTHOST: &str = "553 5.7.1 sorry, that domain isn't in my list of allowed rcpthosts\r\n";
pub const ROUTING_REFUSED: &str = "553 5.7.1 sender-specified routing (% ! @ in the local part) not accepted\r\n";
pub const NO_MAILBOX: &str = "550 5.1.1 sorry, no mailbox here by that name\r\n";
pub const RCPTCHECK_TEMP: &str = "451 4.3.0 unable to verify recipient, try again later\r\n";
pub const TOO_MANY_RCPTS: &str = "452 4.5.3 too many recipients\r\n";
pub const SIZE_EXCEEDED: &str = "552 5.3.4 message size exceeds fixed limit\r\n";
pub const TOO_BIG: &str = "552 5.3.4 message too big\r\n";
/// qmail-smtpd's words for a message past the hop limit (RFC 5321 6.3).
pub const TOO_MANY_HOPS: &str = "554 5.4.6 too many hops, this message is looping\r\n";
pub const BARE_LF_DATA: &str =
    "554 5.6.0 message refused: bare CR or LF in message data (see https://cr.yp.to/docs/smtplf.html)\r\n";
pub const XCLIENT_DENIED: &str = "550 5.7.0 XCLIENT not authorized\r\n";
pub const XFORWARD_DENIED: &str = "550 5.7.0 XFORWARD not authorized\r\n";
pub const BAD_XATTR: &str = "501 5.5.4 bad attribute (name=xtext value expected)\r\n";
pub const QUEUE_UNAVAILABLE: &str = "451 4.3.0 unable to hand the message to the queue\r\n";

// Session end.
pub const TIMEOUT: &str = "421 4.4.2 timeout, closing connection\r\n";
pub const TOO_MANY_ERRORS: &str = "421 4.7.0 too many errors, closing connection\r\n";
pub const PREGREET: &str = "554 5.5.1 protocol error: data sent before the greeting\r\n";
pub const CONFIG_ERROR: &str = "421 4.3.5 server configuration error, try again later\r\n";
