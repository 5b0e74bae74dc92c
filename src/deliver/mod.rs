//! maildir-deliver: deliver one message to local addresses, each into the
//! Maildir the map names for it, reporting as qmail-remote so that
//! queue-run drives it as it drives smtp-remote.
//! Pure parts: `map` (the map file and the extension rule), `name` (unique
//! file names), `header` (the lines prepended, the loop check), `report`.
//! I/O parts: `maildir` (one file into one Maildir), `run` (the program).

pub mod header;
pub mod maildir;
pub mod map;
pub mod name;
pub mod report;
pub mod run;
