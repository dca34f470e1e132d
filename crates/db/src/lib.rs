//! # cairn-db
//!
//! The SQLite brokers shared by container and account servers (`shared/DESIGN.md`,
//! "Container and account servers"; `PROTOCOLS.md`, "Databases"). Sits above `cairn-ring`
//! and `cairn-common`; the container and account servers sit above it.
