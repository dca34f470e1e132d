//! `cairn`: the one binary that runs every role. Argument parsing and dispatch only; the
//! work lives in the crates (`shared/DESIGN.md`, "Layout of the repository").

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "cairn",
    version,
    about = "Cairn: a ring-based object store speaking the Swift API"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Build and inspect rings (`cairn ring BUILDER VERB …`).
    Ring(cairn_ring::cli::RingArgs),
    /// A whole cluster on this machine: 4 storage nodes, 3 replicas, one proxy.
    Aio(cairn_aio::AioArgs),
    /// The proxy server: the public Swift API v1 with TempAuth.
    ProxyServer(ConfigArg),
    /// The object server of a storage node.
    ObjectServer(ConfigArg),
    /// Pushes this node's objects to where the ring says they belong (suffix hashes + SSYNC).
    ObjectReplicator {
        #[command(flatten)]
        daemon: DaemonArgs,
        /// Only these devices (comma-separated names).
        #[arg(long, value_delimiter = ',')]
        devices: Option<Vec<String>>,
        /// Only these partitions (comma-separated numbers).
        #[arg(long, value_delimiter = ',')]
        partitions: Option<Vec<u32>>,
    },
    /// Retries container updates that object writes could not deliver (async pendings).
    ObjectUpdater(DaemonArgs),
    /// Re-reads every object, checks its MD5 and quarantines damaged files.
    ObjectAuditor {
        #[command(flatten)]
        daemon: DaemonArgs,
        /// Only the fast pass over zero-byte files (metadata and size checks).
        #[arg(long)]
        zero_byte_only: bool,
    },
    /// The container server of a storage node (container listings in SQLite).
    ContainerServer(ConfigArg),
    /// Pushes container databases to their other replicas.
    ContainerReplicator(DaemonArgs),
    /// Reports container counts and bytes to the account.
    ContainerUpdater(DaemonArgs),
    /// Checks every container database's integrity; quarantines broken ones.
    ContainerAuditor(DaemonArgs),
    /// The account server of a storage node (container lists in SQLite).
    AccountServer(ConfigArg),
    /// Pushes account databases to their other replicas.
    AccountReplicator(DaemonArgs),
    /// Checks every account database's integrity; quarantines broken ones.
    AccountAuditor(DaemonArgs),
    /// Deletes the containers and objects of accounts marked deleted.
    AccountReaper(DaemonArgs),
    /// Load generator for any Swift-API endpoint (put, get, head, delete, list, mixed).
    Bench(cairn_bench::BenchArgs),
    /// Deletes objects whose X-Delete-At has passed, from the expiring-objects queue.
    ObjectExpirer(DaemonArgs),
    /// Where an account, container or object lives: partition, nodes, curl and disk paths.
    GetNodes(cairn_tools::GetNodesArgs),
    /// Inspect an object file or database on disk: metadata and placement.
    Info(cairn_tools::InfoArgs),
    /// Plant and check dispersion containers and objects (swift-dispersion-populate/report).
    Dispersion(cairn_tools::DispersionArgs),
    /// Every storage server's recon stats in one table; exit 1 on unreachable servers,
    /// ring MD5 mismatches or stale replication.
    Recon(cairn_tools::ReconArgs),
    /// Validate a configuration file; prints the bad key and exits 2 when it is wrong.
    CheckConfig {
        /// The file to check (`cairn.toml`).
        file: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Ring(args) => cairn_ring::cli::run(args),
        Command::CheckConfig { file } => check_config(&file),
        Command::Aio(args) => cairn_aio::main(args),
        Command::Bench(args) => cairn_bench::run(args),
        Command::ObjectReplicator {
            daemon: d,
            devices,
            partitions,
        } => serve("object-replicator", |rt| {
            rt.block_on(cairn_object::replicator::run_object_replicator(
                &d.config, d.once, devices, partitions,
            ))
            .map_err(|e| e.to_string())
        }),
        Command::ObjectUpdater(d) => serve("object-updater", |rt| {
            rt.block_on(cairn_object::updater::run_object_updater(&d.config, d.once))
                .map_err(|e| e.to_string())
        }),
        Command::ObjectAuditor {
            daemon: d,
            zero_byte_only,
        } => serve("object-auditor", |rt| {
            let mode = if zero_byte_only {
                cairn_object::auditor::AuditMode::ZeroByteFiles
            } else {
                cairn_object::auditor::AuditMode::All
            };
            rt.block_on(cairn_object::auditor::run_object_auditor(
                &d.config, d.once, mode,
            ))
            .map_err(|e| e.to_string())
        }),
        Command::ContainerServer(a) => serve("container-server", |rt| {
            rt.block_on(cairn_container::run_container_server(&a.config))
                .map_err(|e| e.to_string())
        }),
        Command::ContainerReplicator(d) => serve("container-replicator", |rt| {
            rt.block_on(cairn_container::run_container_replicator(&d.config, d.once))
                .map_err(|e| e.to_string())
        }),
        Command::ContainerUpdater(d) => serve("container-updater", |rt| {
            rt.block_on(cairn_container::run_container_updater(&d.config, d.once))
                .map_err(|e| e.to_string())
        }),
        Command::ContainerAuditor(d) => serve("container-auditor", |rt| {
            rt.block_on(cairn_container::run_container_auditor(&d.config, d.once))
                .map_err(|e| e.to_string())
        }),
        Command::AccountServer(a) => serve("account-server", |rt| {
            rt.block_on(cairn_account::config::run_account_server(&a.config))
                .map_err(|e| e.to_string())
        }),
        Command::AccountReplicator(d) => serve("account-replicator", |rt| {
            rt.block_on(cairn_account::config::run_account_replicator(
                &d.config, d.once,
            ))
            .map_err(|e| e.to_string())
        }),
        Command::AccountAuditor(d) => serve("account-auditor", |rt| {
            rt.block_on(cairn_account::config::run_account_auditor(
                &d.config, d.once,
            ))
            .map_err(|e| e.to_string())
        }),
        Command::AccountReaper(d) => serve("account-reaper", |rt| {
            rt.block_on(cairn_account::config::run_account_reaper(&d.config, d.once))
                .map_err(|e| e.to_string())
        }),
        Command::ProxyServer(a) => serve("proxy-server", |rt| {
            rt.block_on(cairn_proxy::run(&a.config))
                .map_err(|e| e.to_string())
        }),
        Command::ObjectExpirer(d) => serve("object-expirer", |rt| {
            rt.block_on(cairn_object::expirer::run_object_expirer(&d.config, d.once))
                .map_err(|e| e.to_string())
        }),
        Command::GetNodes(a) => cairn_tools::get_nodes(a),
        Command::Info(a) => cairn_tools::info(a),
        Command::Dispersion(args) => cairn_tools::dispersion(args),
        Command::Recon(args) => cairn_tools::recon(args),
        Command::ObjectServer(arg) => serve("object-server", |rt| {
            rt.block_on(cairn_object::config::run_object_server(&arg.config))
                .map_err(|e| e.to_string())
        }),
    }
}

/// `--config FILE` of a server.
#[derive(clap::Args)]
struct ConfigArg {
    /// The server's role file (`object-server.toml`, …).
    #[arg(long)]
    config: PathBuf,
}

/// `--config FILE [--once]` of a daemon.
#[derive(clap::Args)]
struct DaemonArgs {
    /// The role file of the server whose devices the daemon works on.
    #[arg(long)]
    config: PathBuf,
    /// Make one pass and exit instead of running forever.
    #[arg(long)]
    once: bool,
}

/// Run a server to completion on a multi-threaded runtime; exit 2 when it cannot start.
fn serve(
    name: &str,
    body: impl FnOnce(&tokio::runtime::Runtime) -> Result<(), String>,
) -> ExitCode {
    cairn_common::logging::init_logging(name);
    let runtime = match cairn_common::daemon::build_runtime(0) {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("{name}: cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match body(&runtime) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{name}: {e}");
            ExitCode::from(2)
        }
    }
}

/// Which kind of configuration file `check-config` was given.
#[derive(Debug, Clone, Copy)]
enum ConfigKind {
    Cluster,
    ObjectServer,
    ContainerServer,
    AccountServer,
    ProxyServer,
}

/// By file name first (`object-server.toml`), else by the tables the file holds.
fn config_kind(file: &std::path::Path) -> Result<ConfigKind, String> {
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let by_tables = |text: &str| -> Option<ConfigKind> {
        let value: toml::Table = text.parse().ok()?;
        if value.contains_key("cluster") {
            return Some(ConfigKind::Cluster);
        }
        let has = |prefix: &str| value.keys().any(|k| k.starts_with(prefix));
        if has("object-") {
            Some(ConfigKind::ObjectServer)
        } else if has("container-") {
            Some(ConfigKind::ContainerServer)
        } else if has("account-") {
            Some(ConfigKind::AccountServer)
        } else if has("proxy") || has("tempauth") {
            Some(ConfigKind::ProxyServer)
        } else {
            None
        }
    };
    for (needle, kind) in [
        ("object-server", ConfigKind::ObjectServer),
        ("container-server", ConfigKind::ContainerServer),
        ("account-server", ConfigKind::AccountServer),
        ("proxy-server", ConfigKind::ProxyServer),
    ] {
        if name.contains(needle) {
            return Ok(kind);
        }
    }
    if name.starts_with("cairn") {
        return Ok(ConfigKind::Cluster);
    }
    let text = std::fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))?;
    by_tables(&text).ok_or_else(|| {
        format!(
            "{}: cannot tell which kind of file this is; name it cairn.toml or <role>-server.toml",
            file.display()
        )
    })
}

fn check_config(file: &std::path::Path) -> ExitCode {
    let checked = config_kind(file).and_then(|kind| match kind {
        ConfigKind::Cluster => check_cluster(file),
        ConfigKind::ObjectServer => {
            check_role::<cairn_object::config::ObjectServerFile>(file, "object server")
        }
        ConfigKind::ContainerServer => {
            check_role::<cairn_container::config::ContainerServerFile>(file, "container server")
        }
        ConfigKind::AccountServer => {
            check_role::<cairn_account::config::AccountServerFile>(file, "account server")
        }
        ConfigKind::ProxyServer => cairn_proxy::ProxyConfig::load(file)
            .map_err(|e| e.to_string())
            .and_then(|_| check_role::<cairn_proxy::ProxyConfig>(file, "proxy server")),
    });
    match checked {
        Ok(summary) => {
            println!("{}: ok ({summary})", file.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

fn check_cluster(file: &std::path::Path) -> Result<String, String> {
    let config = cairn_common::config::ClusterConfig::load(file).map_err(|e| e.to_string())?;
    let n = config.policies.len();
    Ok(format!(
        "cluster file, {n} storage polic{}, default {:?}, {}",
        if n == 1 { "y" } else { "ies" },
        config.default_policy().name,
        constraint_overrides(&config.constraints)
    ))
}

/// Which constraints differ from Swift's defaults, so an operator sees that an override
/// took effect (`constraints: max_meta_count = 3`).
fn constraint_overrides(c: &cairn_common::constraints::Constraints) -> String {
    let table =
        |c: &cairn_common::constraints::Constraints| toml::Table::try_from(c).unwrap_or_default();
    let defaults = table(&Default::default());
    let changed: Vec<String> = table(c)
        .into_iter()
        .filter(|(k, v)| defaults.get(k) != Some(v))
        .map(|(k, v)| format!("{k} = {v}"))
        .collect();
    if changed.is_empty() {
        "default constraints".to_string()
    } else {
        format!("constraints: {}", changed.join(", "))
    }
}

/// A server-role file and the cluster file it names.
fn check_role<T: cairn_common::server_config::RoleConfig>(
    file: &std::path::Path,
    what: &str,
) -> Result<String, String> {
    let role: T = cairn_common::server_config::load_role_config(file).map_err(|e| e.to_string())?;
    let server = role.server();
    server
        .load_cluster()
        .map_err(|e| format!("{} (named by {})", e, file.display()))?;
    Ok(format!(
        "{what} file; cluster file {}",
        server.cluster_config.display()
    ))
}
