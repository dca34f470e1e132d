//! # cairn-account
//!
//! The account server (`PROTOCOLS.md`, "Backend HTTP API" → "Account server") on top of
//! the `cairn-db` account broker: account PUT/POST/DELETE/HEAD/GET (listings in JSON, XML
//! and plain text, per-policy stats headers), container reports from container servers
//! and the container-updater, the DB replication RPC (`REPLICATE /DEV/PART/HASH`) and
//! whole-DB uploads (`PUT /DEV/tmp/NAME`) ([`server`]); and `account-server.toml` with the
//! run functions of the account server, account-replicator and account-auditor
//! ([`config`]). Sits above `cairn-db`, `cairn-ring` and `cairn-common`. The account
//! reaper is not implemented yet.

pub mod config;
pub mod server;

pub use config::{
    run_account_auditor, run_account_replicator, run_account_server, AccountServerFile, RunError,
};
pub use server::{AccountServer, AccountServerSettings};
