//! # cairn-container
//!
//! The container server (`PROTOCOLS.md`, "Backend HTTP API" → "Container server") on top
//! of the `cairn-db` brokers: container PUT/POST/DELETE/HEAD/GET (listings in JSON, XML
//! and plain text), object-row PUT/DELETE from object servers, the account update after a
//! container PUT/DELETE, the DB replication RPC (`REPLICATE /DEV/PART/HASH`) and whole-DB
//! uploads (`PUT /DEV/tmp/NAME`); and the container-updater ([`updater`]). Sits above
//! `cairn-db`, `cairn-ring` and `cairn-common`.

pub mod server;
pub mod updater;

pub use server::{ContainerServer, ContainerServerSettings};
pub use updater::{ContainerUpdater, UpdaterSettings, UpdaterStats};
