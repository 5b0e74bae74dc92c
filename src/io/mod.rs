//! Adapters for fds, pipes, sockets and processes. The pure modules never see an fd.
pub mod ucspi;
pub mod ucspitls;
