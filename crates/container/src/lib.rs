//! # cairn-container
//!
//! The container server (`PROTOCOLS.md`, "Backend HTTP API" → "Container server") on top
//! of the `cairn-db` brokers: container PUT/POST/DELETE/HEAD/GET (listings in JSON, XML
//! and plain text), object-row PUT/DELETE from object servers, the account update after a
//! container PUT/DELETE, the DB replication RPC (`REPLICATE /DEV/PART/HASH`) and whole-DB
//! uploads (`PUT /DEV/tmp/NAME`); the container-updater ([`updater`]); and
//! `container-server.toml` with the run functions of the container server, replicator,
//! updater and auditor ([`config`]). Sits above `cairn-db`, `cairn-ring` and
//! `cairn-common`.

pub mod config;
pub mod server;
pub mod updater;

pub use config::{
    run_container_auditor, run_container_replicator, run_container_server, run_container_updater,
    ContainerServerFile, RunError,
};
pub use server::{ContainerServer, ContainerServerSettings};
pub use updater::{ContainerUpdater, UpdaterSettings, UpdaterStats};
