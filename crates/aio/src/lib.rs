//! # cairn-aio
//!
//! `cairn aio`: the embedded default cluster (issue "One command to a running cluster").
//! It sits at the top of the map beside the binary: it writes the configuration of a
//! whole cluster into one directory ([`layout`]), builds its rings with the real ring
//! builder ([`init`]), then starts every server and daemon of every node as a child
//! process of the same `cairn` binary and supervises them ([`run`]).
//!
//! Every child is an ordinary `cairn <daemon> --config FILE` process, so an operator or a
//! fault test can stop and restart any one of them alone (pid files in `DIR/run/`).

pub mod init;
pub mod layout;
pub mod run;

use std::path::PathBuf;

/// `cairn aio` options.
#[derive(Debug, Clone, clap::Args)]
pub struct AioArgs {
    #[command(subcommand)]
    pub action: Option<AioAction>,
    #[command(flatten)]
    pub opts: AioOptions,
}

#[derive(Debug, Clone, clap::Subcommand)]
pub enum AioAction {
    /// Write configuration, rings and device directories without starting anything.
    Init,
}

/// The shape of the cluster. Only used when DIR is new: an existing DIR is reused as is.
#[derive(Debug, Clone, clap::Args)]
pub struct AioOptions {
    /// Where configuration, data, logs and pid files live.
    #[arg(long, default_value = "cairn-data", global = true)]
    pub dir: PathBuf,
    /// Address every server listens on.
    #[arg(long, default_value = "127.0.0.1", global = true)]
    pub bind_ip: String,
    /// The proxy's port.
    #[arg(long, default_value_t = 8080, global = true)]
    pub proxy_port: u16,
    /// Storage ports: node N uses BASE+10N (object), +1 (container), +2 (account).
    #[arg(long, default_value_t = 6200, global = true)]
    pub port_base: u16,
    /// Number of storage nodes (one zone and one device each).
    #[arg(long, default_value_t = 4, global = true)]
    pub nodes: u16,
    /// Replicas of every object, container and account.
    #[arg(long, default_value_t = 3, global = true)]
    pub replicas: u16,
    /// Partition power of the three rings.
    #[arg(long, default_value_t = 10, global = true)]
    pub part_power: u8,
    /// Seconds tombstones are kept (the consistency window).
    #[arg(long, default_value_t = 604_800, global = true)]
    pub reclaim_age: u64,
    /// Spread the nodes over this many regions (the proxy prefers region 1 for reads).
    #[arg(long, default_value_t = 1, global = true)]
    pub regions: u16,
}

/// Why `cairn aio` could not build or run the cluster.
#[derive(Debug, thiserror::Error)]
pub enum AioError {
    #[error("{0}")]
    BadOption(String),
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("ring: {0}")]
    Ring(#[from] cairn_ring::builder::BuilderError),
    #[error("{0}")]
    Config(#[from] cairn_common::config::ConfigError),
    #[error("{0}")]
    Startup(String),
}

impl AioError {
    pub(crate) fn io(path: &std::path::Path, source: std::io::Error) -> Self {
        AioError::Io {
            path: path.display().to_string(),
            source,
        }
    }
}

/// Entry point of `cairn aio …`; returns the process exit code.
pub fn main(args: AioArgs) -> std::process::ExitCode {
    let result = match args.action {
        Some(AioAction::Init) => init::init(&args.opts).map(|layout| {
            println!("cluster written to {}", layout.root.display());
        }),
        None => run::run(&args.opts),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cairn aio: {e}");
            std::process::ExitCode::from(2)
        }
    }
}
