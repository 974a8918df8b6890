//! The child processes plugins run in (runners and vetters): the system calls they need and
//! the memory limits put on them. Nothing here knows what the child does; the protocol it
//! speaks belongs to the interface built on this runtime.

pub mod memory_limit;
pub mod sys;
