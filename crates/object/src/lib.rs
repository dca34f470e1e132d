//! # cairn-object
//!
//! Object storage on a node's devices (`shared/DESIGN.md`, "Object server"; `PROTOCOLS.md`,
//! "Object storage on disk"). Sits above `cairn-ring` and `cairn-common`; the binary and
//! the proxy's shared types sit above it.
//!
//! The disk layer is blocking code with a small surface:
//! - [`DiskFileManager`] resolves devices (507 when unavailable) and builds [`DiskFile`]s;
//! - [`DiskFile::open`] returns the current [`DiskFileState`] after running
//!   `cleanup_ondisk_files` ([`ondisk`]); [`OpenObject`] gives verified readers;
//! - [`DiskFile::create`] → [`DiskFileWriter`] → `commit` is the crash-safe PUT;
//!   [`DiskFile::write_tombstone`] and [`DiskFile::write_meta`] the DELETE and POST;
//! - [`hashes`] keeps the suffix hashes replication compares;
//! - [`async_pending`] stores failed container updates, which the [`updater`] replays;
//! - [`auditor`] re-reads objects at a bounded rate and quarantines damaged ones;
//! - [`expirer`] deletes objects whose `X-Delete-At` has passed (the `.expiring_objects`
//!   queue).
//! - [`replicator`] pushes partitions to where the ring wants them (REPLICATE + SSYNC,
//!   sent by [`ssync_sender`]; received by `server::ssync`).

pub mod async_pending;
pub mod auditor;
pub mod config;
pub mod diskfile;
pub mod error;
pub mod expirer;
pub mod hashes;
pub mod layout;
pub mod metadata;
pub mod ondisk;
pub mod replicator;
pub mod server;
pub mod ssync_sender;
pub mod updater;

pub use diskfile::{
    cleanup_object_tmp_files, cleanup_tmp_dirs, DiskConfig, DiskFile, DiskFileManager,
    DiskFileState, DiskFileWriter, HashEntry, ObjectInfo, ObjectReader, OpenObject,
};
pub use error::DiskError;
pub use metadata::Metadata;
