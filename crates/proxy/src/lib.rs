//! # cairn-proxy
//!
//! The public Swift API of Cairn (`shared/DESIGN.md`, "Proxy server"; `PROTOCOLS.md`,
//! "Public API"): TempAuth-compatible stateless tokens with container and account ACLs,
//! the account, container and object controllers with ring placement, quorum writes and
//! failover reads, streaming object PUT (`Expect: 100-continue` to every replica) and
//! GET (resumed from another replica if a node fails mid-stream), server-side copy,
//! large objects (DLO/SLO), bulk delete, container quotas, TempURL and FormPost, `/info`
//! and CORS basics.
//!
//! Construct with [`ProxyServer::from_config_file`] (or [`Proxy::new`] with explicit
//! [`Rings`]) and serve it with `cairn_common::http::serve`, or call [`run`] (inside a
//! runtime) / [`run_blocking`] with the path of `proxy-server.toml`:
//!
//! ```text
//! Command::ProxyServer(arg) => serve("proxy-server", |rt| {
//!     rt.block_on(cairn_proxy::run(&arg.config)).map_err(|e| e.to_string())
//! }),
//! ```
//!
//! Modules: [`config`] (the role file), [`auth`] (TempAuth, tokens, ACLs), [`headers`]
//! (edge filtering, error bodies), [`quorum`], [`nodes`] (error limiting, node lists,
//! update assignment), [`backend`] (fan-out and failover reads), [`put`] (streaming
//! PUT), [`resume`] (resuming GETs), [`cache`] (account/container info),
//! `account`/`container`/`object` controllers, [`largeobj`], [`bulk`], [`info`],
//! [`cors`], [`server`] (routing, the edge and the handler), [`affinity`] (read
//! ordering and write affinity), [`repair`] (read repair), [`signature`] (temp-URL keys
//! and HMACs), [`tempurl`] and [`formpost`].

// Controllers return early with a ready client response as their error value; boxing
// it would only add allocations on the error path.
#![allow(clippy::result_large_err)]

pub mod affinity;
pub mod auth;
pub mod backend;
pub mod bulk;
pub mod cache;
pub mod config;
pub mod cors;
pub mod formpost;
pub mod headers;
pub mod info;
pub mod largeobj;
pub mod nodes;
pub mod put;
pub mod quorum;
pub mod repair;
pub mod resume;
pub mod server;
pub mod signature;
mod slo_put;
pub mod tempurl;
pub mod versioning;

mod account;
mod container;
mod object;

pub use config::ProxyConfig;
pub use object::{expirer_container, guess_content_type};
pub use server::{run, run_blocking, Proxy, ProxyServer, RingSource, Rings};

#[cfg(test)]
mod tests;
