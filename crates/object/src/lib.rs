//! # cairn-object
//!
//! Object storage on a node's devices (`shared/DESIGN.md`, "Object server"; `PROTOCOLS.md`,
//! "Object storage on disk"). Sits above `cairn-ring` and `cairn-common`; the binary and
//! the proxy's shared types sit above it.
