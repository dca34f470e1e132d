//! # cairn-account
//!
//! The account server (`PROTOCOLS.md`, "Backend HTTP API" → "Account server") on top of
//! the `cairn-db` account broker: account PUT/POST/DELETE/HEAD/GET (listings in JSON, XML
//! and plain text, per-policy stats headers), container reports from container servers
//! and the container-updater, the DB replication RPC (`REPLICATE /DEV/PART/HASH`) and
//! whole-DB uploads (`PUT /DEV/tmp/NAME`) ([`server`]); the account reaper, which deletes
//! the containers and objects of accounts marked deleted ([`reaper`]); and
//! `account-server.toml` with the run functions of the account server,
//! account-replicator, account-auditor and account-reaper ([`config`]). Sits above
//! `cairn-db`, `cairn-ring` and `cairn-common`.

pub mod config;
pub mod reaper;
pub mod server;

pub use config::{
    run_account_auditor, run_account_reaper, run_account_replicator, run_account_server,
    AccountServerFile, RunError,
};
pub use server::{AccountServer, AccountServerSettings};
