//! # cairn-bench
//!
//! `cairn bench`: a lean load generator for any Swift-API endpoint — a Cairn proxy, a
//! Swift cluster, or anything else that speaks TempAuth v1 and the object API
//! (`shared/PROTOCOLS.md`, "Public API").
//!
//! On the map (`shared/DESIGN.md`) it is a client-side tool beside the binary: the binary
//! wires `cairn bench …` to [`run`], and this crate depends on no server crate — only on
//! tokio, hyper and the small parsing and reporting crates. It measures a cluster from
//! the outside, the way `swift-bench` or `ssbench` would.
//!
//! ```text
//! cairn bench put   --auth http://127.0.0.1:8080/auth/v1.0 -U test:tester -K testing \
//!                   --size 64K --concurrency 32 --count 10000 --containers 8
//! cairn bench get   --auth … -U … -K … --count 10000 --containers 8 --verify
//! cairn bench mixed --storage-url http://127.0.0.1:8080/v1/AUTH_test --token AUTH_tk… \
//!                   --mix put=20,get=70,head=5,delete=5 --duration 60s --cleanup --json
//! ```
//!
//! - **Names**: object `N` (0, 1, 2, …) is `PREFIX-NNNNNNNNNN` in container
//!   `PREFIX-(N mod CONTAINERS)`, so a `get`, `head` or `delete` run finds what an earlier
//!   `put` run with the same `--prefix` and `--containers` wrote (`--objects` tells how many
//!   exist; it defaults to `--count`). `put` and `mixed` PUT their containers first.
//! - **Workloads**: `put`, `get`, `head`, `delete`, `list` (container GETs, JSON, up to
//!   `--list-limit` names) and `mixed` (random operations weighted by `--mix`; GET, HEAD
//!   and DELETE pick among the objects this run knows to exist — `--objects N` seeds them
//!   with 0..N — and fall back to PUT while there are none).
//! - **Bodies** are generated: one buffer of `min(size, 1 MiB)` random bytes, streamed as
//!   slices for every PUT whatever the object size (no per-request body allocation). GET
//!   bodies are read fully and counted; `--verify` also checks MD5s against ETags.
//! - **Measures**: ops/s, MB/s (10^6 bytes), latency p50/p90/p99/max of the successful
//!   requests (HDR histogram, 0.1 % precision), failures by status (`404`, `503`, …) or
//!   client reason (`connect`, `timeout`, `request`, `body`, `etag`), and the tool's own
//!   CPU time per request (`getrusage(RUSAGE_SELF)`, user + sys, over the measured phase
//!   only). Text on stdout, or JSON with `--json`; a progress bar on stderr when it is a
//!   terminal.
//! - **Exit codes**: 0 all requests succeeded; 1 some failed (the summary is still
//!   printed) or the setup (container PUTs) failed; 2 bad input or authentication failure,
//!   with one line on stderr.

pub mod client;
pub mod parse;
mod runner;
pub mod stats;

use std::process::ExitCode;
use std::time::Duration;

pub use parse::Mix;
pub use stats::Summary;

/// One kind of request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    /// Object PUT.
    Put,
    /// Object GET (body read fully).
    Get,
    /// Object HEAD.
    Head,
    /// Object DELETE.
    Delete,
    /// Container GET (a listing).
    List,
}

impl Op {
    /// Number of kinds.
    pub const COUNT: usize = 5;
    /// Every kind, in index order.
    pub const ALL: [Op; Op::COUNT] = [Op::Put, Op::Get, Op::Head, Op::Delete, Op::List];

    /// Position in [`Op::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// Lower-case name, as in `--mix`.
    pub fn name(self) -> &'static str {
        match self {
            Op::Put => "put",
            Op::Get => "get",
            Op::Head => "head",
            Op::Delete => "delete",
            Op::List => "list",
        }
    }

    /// The kind named `s` (case-insensitive).
    pub fn from_name(s: &str) -> Option<Op> {
        Op::ALL
            .into_iter()
            .find(|op| op.name().eq_ignore_ascii_case(s))
    }
}

/// What a run does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Workload {
    /// PUT objects 0..count.
    Put,
    /// GET objects (0..objects, round robin), reading bodies fully.
    Get,
    /// HEAD objects (0..objects, round robin).
    Head,
    /// DELETE objects (0..objects, round robin: repeats are 404s).
    Delete,
    /// GET container listings (round robin over the containers).
    List,
    /// Random operations weighted by `--mix`.
    Mixed,
}

impl Workload {
    /// Lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            Workload::Put => "put",
            Workload::Get => "get",
            Workload::Head => "head",
            Workload::Delete => "delete",
            Workload::List => "list",
            Workload::Mixed => "mixed",
        }
    }
}

/// `cairn bench [WORKLOAD] [OPTIONS]`.
#[derive(Debug, Clone, clap::Args)]
#[command(
    about = "Load-test a Swift-API endpoint",
    after_help = "Sizes: 4K = 4KiB = 4096, 4KB = 4000 (also M/MiB/MB, G, T). \
                  Durations: 500ms, 30s, 2m, 1h. Exit: 0 no errors, 1 some requests \
                  failed, 2 bad input or auth failure."
)]
pub struct BenchArgs {
    /// The workload (or give it with --op).
    #[arg(value_enum, value_name = "WORKLOAD")]
    pub workload: Option<Workload>,
    /// The workload, as an option.
    #[arg(
        long = "op",
        value_enum,
        value_name = "WORKLOAD",
        conflicts_with = "workload"
    )]
    pub op: Option<Workload>,

    /// TempAuth v1 URL (e.g. http://127.0.0.1:8080/auth/v1.0); needs -U and -K.
    #[arg(long, value_name = "URL", conflicts_with_all = ["storage_url", "token"])]
    pub auth: Option<String>,
    /// ACCOUNT:USER for --auth.
    #[arg(short = 'U', long, value_name = "ACCOUNT:USER", requires = "auth")]
    pub user: Option<String>,
    /// Key for --auth.
    #[arg(short = 'K', long, value_name = "KEY", requires = "auth")]
    pub key: Option<String>,
    /// Storage URL (http://HOST:PORT/v1/AUTH_account), instead of --auth.
    #[arg(long, value_name = "URL")]
    pub storage_url: Option<String>,
    /// X-Auth-Token to send with --storage-url.
    #[arg(long, value_name = "TOKEN", requires = "storage_url")]
    pub token: Option<String>,

    /// Object size (4K, 64MiB, 1MB, 0 …).
    #[arg(long, value_parser = parse::parse_size, default_value = "4K")]
    pub size: u64,
    /// Operation weights for `mixed` (default put=20,get=70,head=5,delete=5).
    #[arg(long, value_parser = parse::parse_mix, value_name = "OP=W,…")]
    pub mix: Option<Mix>,
    /// Requests in flight (and idle connections kept).
    #[arg(short = 'c', long, default_value_t = 16)]
    pub concurrency: usize,
    /// Number of requests (default 1000 unless --duration is given; with both, whichever
    /// ends first).
    #[arg(short = 'n', long)]
    pub count: Option<u64>,
    /// Run for this long (30s, 2m …).
    #[arg(short = 'd', long, value_parser = parse::parse_duration)]
    pub duration: Option<Duration>,
    /// Number of containers to spread objects over.
    #[arg(long, default_value_t = 1)]
    pub containers: u64,
    /// Prefix of container and object names.
    #[arg(long, default_value = "cairn-bench")]
    pub prefix: String,
    /// How many objects exist for get/head/delete (default --count, else 1000), or seed `mixed`
    /// with objects 0..N written by an earlier put run.
    #[arg(long)]
    pub objects: Option<u64>,
    /// Delete what this run created (objects, then containers it created) at the end.
    #[arg(long)]
    pub cleanup: bool,
    /// Check ETags: PUTs send the MD5 and check the reply; GETs hash the body.
    #[arg(long)]
    pub verify: bool,
    /// Print the summary as JSON.
    #[arg(long)]
    pub json: bool,
    /// Runtime worker threads.
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// Per-request timeout (connect, send, read the whole response).
    #[arg(long, value_parser = parse::parse_duration, default_value = "60s")]
    pub timeout: Duration,
    /// `limit` of the listings of the `list` operation.
    #[arg(long, default_value_t = 1000)]
    pub list_limit: u32,
    /// No progress bar, even on a terminal.
    #[arg(long)]
    pub no_progress: bool,
}

/// Why a run could not produce a summary.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// Bad command-line input (exit 2).
    #[error("{0}")]
    Usage(String),
    /// Authentication failed (exit 2).
    #[error("{0}")]
    Auth(String),
    /// The run could not start: runtime, container creation (exit 1).
    #[error("{0}")]
    Setup(String),
}

impl BenchError {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            BenchError::Usage(_) | BenchError::Auth(_) => 2,
            BenchError::Setup(_) => 1,
        }
    }
}

/// `cairn bench`: run, print the summary (text or JSON) on stdout, and return the exit
/// code (0 no errors, 1 some requests failed, 2 bad input or auth failure).
pub fn run(args: BenchArgs) -> ExitCode {
    let json = args.json;
    match run_summary(args) {
        Ok(summary) => {
            if json {
                match serde_json::to_string_pretty(&summary) {
                    Ok(s) => println!("{s}"),
                    Err(e) => {
                        eprintln!("cairn bench: cannot encode the summary: {e}");
                        return ExitCode::from(1);
                    }
                }
            } else {
                print!("{}", summary.to_text());
            }
            if summary.errors == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(e) => {
            eprintln!("cairn bench: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

/// Run the benchmark and return its summary without printing it (the progress bar, if
/// any, still goes to stderr). Builds its own tokio runtime: do not call it from inside
/// one.
pub fn run_summary(args: BenchArgs) -> Result<Summary, BenchError> {
    let plan = runner::Plan::from_args(&args)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(plan.threads)
        .thread_name("cairn-bench")
        .enable_all()
        .build()
        .map_err(|e| BenchError::Setup(format!("cannot start the runtime: {e}")))?;
    let result = runtime.block_on(runner::execute(plan));
    // Connections still idle in the pool are dropped with the runtime.
    runtime.shutdown_timeout(Duration::from_millis(100));
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: BenchArgs,
    }

    fn parse(argv: &[&str]) -> Result<BenchArgs, clap::Error> {
        Cli::try_parse_from(std::iter::once("bench").chain(argv.iter().copied())).map(|c| c.args)
    }

    #[test]
    fn op_names_round_trip() {
        for op in Op::ALL {
            assert_eq!(Op::from_name(op.name()), Some(op));
            assert_eq!(Op::ALL[op.index()], op);
        }
        assert_eq!(Op::from_name("DELETE"), Some(Op::Delete));
        assert_eq!(Op::from_name("post"), None);
    }

    #[test]
    fn command_line() {
        let a = parse(&[
            "put",
            "--storage-url",
            "http://127.0.0.1:1/v1/AUTH_a",
            "--size",
            "64MiB",
            "-c",
            "4",
            "-n",
            "10",
        ])
        .unwrap();
        assert_eq!(a.workload, Some(Workload::Put));
        assert_eq!(a.size, 64 << 20);
        assert_eq!(a.concurrency, 4);
        assert_eq!(a.count, Some(10));

        let a = parse(&[
            "--op",
            "mixed",
            "--auth",
            "http://h/auth/v1.0",
            "-U",
            "a:u",
            "-K",
            "k",
            "--mix",
            "put=1,get=3",
            "-d",
            "2s",
        ])
        .unwrap();
        assert_eq!(a.op, Some(Workload::Mixed));
        assert_eq!(a.mix.unwrap().weight(Op::Get), 3);
        assert_eq!(a.duration, Some(Duration::from_secs(2)));

        // Bad input is a clap error (exit 2).
        for bad in [
            &["put", "--size", "4X"][..],
            &["mixed", "--mix", "put=1,post=2"],
            &["put", "--op", "get"],
            &[
                "put",
                "--auth",
                "http://h/auth",
                "--storage-url",
                "http://h/v1/a",
            ],
            &["put", "-d", "-3s"],
            &["frobnicate"],
        ] {
            let e = parse(bad)
                .err()
                .unwrap_or_else(|| panic!("{bad:?} accepted"));
            assert_eq!(e.exit_code(), 2, "{bad:?}");
        }
    }

    #[test]
    fn usage_errors_exit_2() {
        let cases: &[&[&str]] = &[
            &["put"],                                              // no endpoint
            &["--storage-url", "http://127.0.0.1:1/v1/a"],         // no workload
            &["put", "--storage-url", "https://127.0.0.1:1/v1/a"], // https
            &["put", "--storage-url", "127.0.0.1:1/v1/a"],         // not a URL
            &["put", "--storage-url", "http://h/v1/a", "-c", "0"], // no concurrency
            &["put", "--storage-url", "http://h/v1/a", "-n", "0"], // no requests
            &["put", "--storage-url", "http://h/v1/a", "--containers", "0"],
            &[
                "put",
                "--storage-url",
                "http://h/v1/a",
                "--containers",
                "2000000",
            ],
            &["put", "--storage-url", "http://h/v1/a", "--prefix", "a/b"],
            &["get", "--storage-url", "http://h/v1/a", "--mix", "get=1"],
            &["put", "--auth", "http://h/auth/v1.0"], // no -U/-K
            &[
                "put",
                "--auth",
                "http://h/auth/v1.0",
                "-U",
                "nocolon",
                "-K",
                "k",
            ],
        ];
        for argv in cases {
            let args = parse(argv).unwrap_or_else(|e| panic!("{argv:?}: {e}"));
            match run_summary(args) {
                Err(e) => assert_eq!(e.exit_code(), 2, "{argv:?}: {e}"),
                Ok(_) => panic!("{argv:?} ran"),
            }
        }
    }

    #[test]
    fn auth_failure_exits_2() {
        // Nothing listens on port 1 of loopback: the auth request cannot connect.
        let args = parse(&[
            "put",
            "--auth",
            "http://127.0.0.1:1/auth/v1.0",
            "-U",
            "a:u",
            "-K",
            "k",
            "--timeout",
            "2s",
        ])
        .unwrap();
        let e = run_summary(args).expect_err("auth must fail");
        assert!(matches!(e, BenchError::Auth(_)), "{e}");
        assert_eq!(e.exit_code(), 2);
        assert!(!e.to_string().contains('\n'));
    }
}
