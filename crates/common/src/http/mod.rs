//! HTTP plumbing shared by every Cairn server and backend caller (`DESIGN.md`, "Runtime
//! and HTTP"; `PROTOCOLS.md`, "Backend HTTP API").
//!
//! * [`server`]: the [`Handler`] trait and the [`serve`] runner (tracing span, metrics,
//!   transaction ids, operator endpoints, graceful shutdown).
//! * [`body`]: the streaming [`Body`] type and helpers ([`full`], [`empty`], [`text`],
//!   [`json`], [`channel`], [`from_stream`]), the handler's [`RequestBody`].
//! * [`path`]: backend path parsing and [`quote`]; [`headers`]: `X-Timestamp`, policy
//!   index, transaction ids; [`device`]: the 507 device check; [`error`]: [`HttpError`].
//! * [`client`]: the pooled [`BackendClient`] with connect/node timeouts.

pub mod body;
pub mod client;
pub mod device;
pub mod error;
pub mod headers;
pub mod path;
pub mod server;

pub use body::{
    channel, collect_limited, empty, from_stream, full, json, text, Body, BodyClosed, BodySender,
    RequestBody, TimeoutBody,
};
pub use client::{authority, BackendClient, BackendResponse, ClientError, Timeouts};
pub use device::{check_device, check_device_async, check_free_space_async, Unavailable};
pub use error::HttpError;
pub use headers::{
    header_parse, header_str, new_trans_id, policy_index, x_timestamp, x_timestamp_opt,
};
pub use path::{
    backend_path, decode_path, parse_account_path, parse_backend_path, parse_container_path,
    parse_db_replicate_path, parse_device_partition, parse_object_path, parse_replicate_path,
    parse_tmp_path, quote, split_path, BackendPath, DevicePartitionPath, PathError,
};
pub use server::{
    bind, handler_fn, serve, spawn_server, trans_id, FnHandler, Handler, RequestInfo, ServeOptions,
    ServerHandle,
};

#[cfg(test)]
mod tests;
