//! `cairn aio`: start every process of the cluster and supervise it in the foreground.
//!
//! Children are plain `cairn <daemon> --config FILE` processes in their own process group
//! (so a terminal's Ctrl-C reaches only the supervisor, which then stops them in order).
//! A child that dies is reported and not restarted: fault tests stop and start single
//! daemons on purpose, and a supervisor fighting them would hide what they test.

use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};
use tokio::signal::unix::{signal, SignalKind};

use crate::init::{init, load_shape};
use crate::layout::{Layout, Role, Shape};
use crate::{AioError, AioOptions};

/// How long the cluster may take to answer its health checks.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long children get to stop after SIGTERM before SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// One process to start: a name (for logs and pid files), the subcommand and its config.
#[derive(Debug, Clone)]
pub struct ProcessSpec {
    pub name: String,
    pub subcommand: String,
    pub config: PathBuf,
    /// Address whose `/healthcheck` must answer before the cluster is "ready".
    pub health: Option<SocketAddr>,
}

/// Daemons that run beside each storage server (working on the same devices).
pub const NODE_DAEMONS: &[(&str, Role)] = &[
    ("object-replicator", Role::Object),
    ("object-updater", Role::Object),
    ("object-auditor", Role::Object),
    ("object-expirer", Role::Object),
    ("container-replicator", Role::Container),
    ("container-updater", Role::Container),
    ("container-auditor", Role::Container),
    ("account-replicator", Role::Account),
    ("account-auditor", Role::Account),
    ("account-reaper", Role::Account),
];

/// Every process of the cluster, storage nodes first and the proxy last.
pub fn process_specs(layout: &Layout, shape: &Shape) -> Vec<ProcessSpec> {
    let ip: std::net::IpAddr = shape
        .bind_ip
        .parse()
        .unwrap_or(std::net::Ipv4Addr::LOCALHOST.into());
    let mut specs = Vec::new();
    for n in 1..=shape.nodes {
        for role in Role::ALL {
            specs.push(ProcessSpec {
                name: format!("{}-server-node{n}", role.name()),
                subcommand: format!("{}-server", role.name()),
                config: layout.server_file(n, role),
                health: Some(SocketAddr::new(ip, shape.port(n, role))),
            });
        }
        for (daemon, role) in NODE_DAEMONS {
            specs.push(ProcessSpec {
                name: format!("{daemon}-node{n}"),
                subcommand: (*daemon).to_string(),
                config: layout.server_file(n, *role),
                health: None,
            });
        }
    }
    specs.push(ProcessSpec {
        name: "proxy-server".into(),
        subcommand: "proxy-server".into(),
        config: layout.proxy_file(),
        health: Some(SocketAddr::new(ip, shape.proxy_port)),
    });
    specs
}

/// Initialise DIR if needed, start everything, wait for a signal, stop everything.
pub fn run(opts: &AioOptions) -> Result<(), AioError> {
    let layout = init(opts)?;
    let shape = load_shape(&layout)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| AioError::Startup(format!("cannot start runtime: {e}")))?;
    runtime.block_on(supervise(&layout, &shape))
}

async fn supervise(layout: &Layout, shape: &Shape) -> Result<(), AioError> {
    let exe = std::env::current_exe()
        .map_err(|e| AioError::Startup(format!("cannot find own binary: {e}")))?;
    let specs = process_specs(layout, shape);
    refuse_if_running(layout, &specs)?;
    let mut sigterm =
        signal(SignalKind::terminate()).map_err(|e| AioError::Startup(e.to_string()))?;
    let mut sigint =
        signal(SignalKind::interrupt()).map_err(|e| AioError::Startup(e.to_string()))?;

    let mut children = Vec::new();
    for spec in &specs {
        match spawn(&exe, layout, spec) {
            Ok(child) => children.push((spec.clone(), Some(child))),
            Err(e) => {
                stop_all(layout, &mut children).await;
                return Err(e);
            }
        }
    }
    if let Err(e) = wait_ready(&specs, &mut children).await {
        stop_all(layout, &mut children).await;
        return Err(e);
    }
    print_banner(layout, shape);

    let mut poll = tokio::time::interval(Duration::from_millis(500));
    loop {
        tokio::select! {
            _ = sigterm.recv() => break,
            _ = sigint.recv() => break,
            _ = poll.tick() => reap_exited(layout, &mut children),
        }
    }
    eprintln!("cairn aio: stopping");
    stop_all(layout, &mut children).await;
    Ok(())
}

fn pid_file(layout: &Layout, spec: &ProcessSpec) -> PathBuf {
    layout.run_dir().join(format!("{}.pid", spec.name))
}

/// A pid file whose process is alive means another `cairn aio` runs on this DIR.
fn refuse_if_running(layout: &Layout, specs: &[ProcessSpec]) -> Result<(), AioError> {
    for spec in specs {
        let path = pid_file(layout, spec);
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        if let Ok(pid) = text.trim().parse::<i32>() {
            // SAFETY: kill with signal 0 only checks that the process exists.
            if pid > 0 && unsafe { libc::kill(pid, 0) } == 0 {
                return Err(AioError::Startup(format!(
                    "{} is already running (pid {pid}, {}); stop it first",
                    spec.name,
                    path.display()
                )));
            }
        }
        let _ = std::fs::remove_file(&path);
    }
    Ok(())
}

fn spawn(exe: &Path, layout: &Layout, spec: &ProcessSpec) -> Result<Child, AioError> {
    let log_path = layout.log_dir().join(format!("{}.log", spec.name));
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(|e| AioError::io(&log_path, e))?;
    let log2 = log.try_clone().map_err(|e| AioError::io(&log_path, e))?;
    let mut cmd = std::process::Command::new(exe);
    cmd.arg(&spec.subcommand)
        .arg("--config")
        .arg(&spec.config)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log2)
        .process_group(0);
    let child = Command::from(cmd)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| AioError::Startup(format!("cannot start {}: {e}", spec.name)))?;
    if let Some(pid) = child.id() {
        let path = pid_file(layout, spec);
        std::fs::write(&path, format!("{pid}\n")).map_err(|e| AioError::io(&path, e))?;
    }
    Ok(child)
}

/// Poll every server's `/healthcheck` until all answer 200, within [`READY_TIMEOUT`].
async fn wait_ready(
    specs: &[ProcessSpec],
    children: &mut [(ProcessSpec, Option<Child>)],
) -> Result<(), AioError> {
    let deadline = Instant::now() + READY_TIMEOUT;
    for spec in specs {
        let Some(addr) = spec.health else { continue };
        loop {
            if healthcheck(addr).await {
                break;
            }
            if let Some(exited) = exited_child(children) {
                return Err(AioError::Startup(format!(
                    "{exited} exited during startup; see its log in log/{exited}.log"
                )));
            }
            if Instant::now() > deadline {
                return Err(AioError::Startup(format!(
                    "{} did not answer on {addr} within {}s",
                    spec.name,
                    READY_TIMEOUT.as_secs()
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    Ok(())
}

fn exited_child(children: &mut [(ProcessSpec, Option<Child>)]) -> Option<String> {
    children
        .iter_mut()
        .find_map(|(spec, child)| match child.as_mut()?.try_wait() {
            Ok(Some(_)) => Some(spec.name.clone()),
            _ => None,
        })
}

/// A minimal HTTP/1.0 health probe (blocking, on a blocking thread, bounded by timeouts).
async fn healthcheck(addr: SocketAddr) -> bool {
    tokio::task::spawn_blocking(move || probe(addr))
        .await
        .unwrap_or(false)
}

fn probe(addr: SocketAddr) -> bool {
    let timeout = Duration::from_millis(500);
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, timeout) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(timeout));
    let _ = stream.set_write_timeout(Some(timeout));
    if stream
        .write_all(b"GET /healthcheck HTTP/1.0\r\nHost: aio\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.") && &head[9..12] == b"200"
}

fn reap_exited(layout: &Layout, children: &mut [(ProcessSpec, Option<Child>)]) {
    for (spec, slot) in children.iter_mut() {
        let Some(child) = slot.as_mut() else { continue };
        if let Ok(Some(status)) = child.try_wait() {
            eprintln!(
                "cairn aio: {} exited ({status}); not restarting it",
                spec.name
            );
            let _ = std::fs::remove_file(pid_file(layout, spec));
            *slot = None;
        }
    }
}

/// SIGTERM every child (proxy first), wait, then SIGKILL what is left.
async fn stop_all(layout: &Layout, children: &mut [(ProcessSpec, Option<Child>)]) {
    for (_, child) in children.iter().rev() {
        if let Some(pid) = child.as_ref().and_then(Child::id) {
            // SAFETY: sending SIGTERM to a child we started and have not reaped.
            unsafe { libc::kill(pid as i32, libc::SIGTERM) };
        }
    }
    let deadline = tokio::time::Instant::now() + STOP_TIMEOUT;
    for (spec, slot) in children.iter_mut() {
        if let Some(child) = slot.as_mut() {
            if tokio::time::timeout_at(deadline, child.wait())
                .await
                .is_err()
            {
                eprintln!("cairn aio: {} did not stop in time; killing it", spec.name);
                let _ = child.kill().await;
            }
        }
        let _ = std::fs::remove_file(pid_file(layout, spec));
        *slot = None;
    }
}

fn print_banner(layout: &Layout, shape: &Shape) {
    let url = format!("http://{}:{}/auth/v1.0", shape.bind_ip, shape.proxy_port);
    println!(
        "Cairn aio is ready: {} storage nodes, {} replicas.",
        shape.nodes, shape.replicas
    );
    println!("  Auth URL:  {url}");
    println!(
        "  User:      test:tester   Key: testing   (admin:admin / admin is the reseller admin)"
    );
    println!("  Try:       swift -A {url} -U test:tester -K testing stat");
    println!(
        "  Data:      {}   Logs: {}",
        layout.root.display(),
        layout.log_dir().display()
    );
    println!("Stop with Ctrl-C.");
    let _ = std::io::stdout().flush();
}
