//! `cairn aio init`: write a whole cluster into a directory (see [`crate::layout`]).
//!
//! Idempotent: when `DIR/aio.toml` exists the directory is reused as it is, so a second
//! start keeps the data, the secrets and the rings of the first.

use std::fmt::Write as _;
use std::path::Path;

use cairn_ring::builder::{RebalanceOptions, RingBuilder};
use cairn_ring::Device;
use rand::RngCore;

use crate::layout::{Layout, Role, Shape};
use crate::{AioError, AioOptions};

/// Ring seed: aio rings are reproducible for a given shape.
const RING_SEED: u64 = 1;
const DEVICE_WEIGHT: f64 = 100.0;

/// TempAuth development users, as Swift's all-in-one has them:
/// (account, user, key, groups).
pub const DEFAULT_USERS: &[(&str, &str, &str, &[&str])] = &[
    ("admin", "admin", "admin", &[".admin", ".reseller_admin"]),
    ("admin", "auditor", "admin_ro", &[".reseller_reader"]),
    ("test", "tester", "testing", &[".admin"]),
    ("test", "tester2", "testing2", &[".admin"]),
    ("test", "tester3", "testing3", &[]),
    ("test2", "tester2", "testing2", &[".admin"]),
    ("test5", "tester5", "testing5", &["service"]),
];

/// Write the cluster unless DIR already holds one; return its layout.
pub fn init(opts: &AioOptions) -> Result<Layout, AioError> {
    let layout = Layout::new(&opts.dir);
    if layout.shape_file().exists() {
        return Ok(layout);
    }
    let shape = shape_from(opts)?;
    for dir in [
        layout.etc(),
        layout.ring_dir(),
        layout.log_dir(),
        layout.run_dir(),
    ] {
        mkdir(&dir)?;
    }
    write_new(&layout.cluster_file(), &cluster_file(&random_secret()))?;
    for role in Role::ALL {
        build_ring(&layout, &shape, role)?;
    }
    for n in 1..=shape.nodes {
        mkdir(&layout.node_etc(n))?;
        mkdir(&layout.devices(n).join(shape.device_name(n)))?;
        mkdir(&layout.recon(n))?;
        for role in Role::ALL {
            write_new(
                &layout.server_file(n, role),
                &server_file(&layout, &shape, n, role),
            )?;
        }
    }
    write_new(&layout.proxy_file(), &proxy_file(&shape, &random_secret()))?;
    // The shape file goes last: its presence means "init completed".
    let text = toml::to_string(&shape).map_err(|e| AioError::Startup(e.to_string()))?;
    write_new(&layout.shape_file(), &text)?;
    Ok(layout)
}

/// Read the shape of an initialised directory.
pub fn load_shape(layout: &Layout) -> Result<Shape, AioError> {
    let path = layout.shape_file();
    let text = std::fs::read_to_string(&path).map_err(|e| AioError::io(&path, e))?;
    toml::from_str(&text).map_err(|e| AioError::BadOption(format!("{}: {e}", path.display())))
}

fn shape_from(opts: &AioOptions) -> Result<Shape, AioError> {
    if opts.nodes == 0 {
        return Err(AioError::BadOption("--nodes must be at least 1".into()));
    }
    if opts.regions == 0 || opts.regions > opts.nodes {
        return Err(AioError::BadOption(format!(
            "--regions must be between 1 and --nodes ({})",
            opts.nodes
        )));
    }
    if opts.replicas == 0 || opts.replicas > opts.nodes {
        return Err(AioError::BadOption(format!(
            "--replicas must be between 1 and --nodes ({})",
            opts.nodes
        )));
    }
    if !(1..=20).contains(&opts.part_power) {
        return Err(AioError::BadOption(
            "--part-power must be between 1 and 20".into(),
        ));
    }
    if u32::from(opts.port_base) + 10 * u32::from(opts.nodes) + 2 > u32::from(u16::MAX) {
        return Err(AioError::BadOption(
            "--port-base is too high for that many nodes".into(),
        ));
    }
    if opts.bind_ip.parse::<std::net::IpAddr>().is_err() {
        return Err(AioError::BadOption(format!(
            "--bind-ip {:?} is not an IP address",
            opts.bind_ip
        )));
    }
    Ok(Shape {
        bind_ip: opts.bind_ip.clone(),
        proxy_port: opts.proxy_port,
        port_base: opts.port_base,
        nodes: opts.nodes,
        replicas: opts.replicas,
        part_power: opts.part_power,
        reclaim_age: opts.reclaim_age,
        regions: opts.regions,
    })
}

/// One ring per role: every node is its own zone with one device.
fn build_ring(layout: &Layout, shape: &Shape, role: Role) -> Result<(), AioError> {
    let mut builder = RingBuilder::new(i64::from(shape.part_power), f64::from(shape.replicas), 1)?;
    for n in 1..=shape.nodes {
        let port = shape.port(n, role);
        builder.add_device(Device {
            id: 0,
            region: u32::from(shape.region(n)),
            zone: u32::from(n),
            ip: shape.bind_ip.clone(),
            port,
            replication_ip: shape.bind_ip.clone(),
            replication_port: port,
            device: shape.device_name(n),
            weight: DEVICE_WEIGHT,
            meta: String::new(),
        })?;
    }
    builder.rebalance(&RebalanceOptions {
        seed: Some(RING_SEED),
        now: None,
    })?;
    let path = layout.builder_file(role);
    builder.save(&path)?;
    builder.write_ring(&RingBuilder::ring_path_for(&path))?;
    Ok(())
}

fn random_secret() -> String {
    let mut bytes = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut bytes);
    cairn_ring::hash::to_hex(&bytes)
}

fn cluster_file(suffix: &str) -> String {
    format!(
        "# Cluster file of a `cairn aio` cluster.\n\
         [cluster]\n\
         hash_path_prefix = \"\"\n\
         hash_path_suffix = \"{suffix}\"\n\
         ring_dir = \"rings\"\n\n\
         [[policy]]\n\
         index = 0\n\
         name = \"gold\"\n\
         default = true\n"
    )
}

fn server_file(layout: &Layout, shape: &Shape, n: u16, role: Role) -> String {
    let mut out = format!(
        "# {role}-server of node {n} of a `cairn aio` cluster.\n\
         [server]\n\
         bind_ip = \"{ip}\"\n\
         bind_port = {port}\n\
         devices = {devices:?}\n\
         mount_check = false\n\
         recon_cache_path = {recon:?}\n\
         cluster_config = \"../cairn.toml\"\n",
        role = role.name(),
        ip = shape.bind_ip,
        port = shape.port(n, role),
        devices = layout.devices(n).display().to_string(),
        recon = layout.recon(n).display().to_string(),
    );
    let _ = write!(out, "{}", role_tables(shape, n, role));
    out
}

/// The role-specific tables of a storage server file: the consistency window, and the
/// daemons that work on the same devices with their defaults spelled out for operators.
fn role_tables(shape: &Shape, n: u16, role: Role) -> String {
    let age = shape.reclaim_age;
    // Every node runs an expirer; each takes its own share of the queue.
    let (processes, process) = (shape.nodes, n - 1);
    match role {
        Role::Object => format!(
            "\n[object-server]\nreclaim_age = {age}\n\n\
             [object-replicator]\ninterval = 30\n\n\
             [object-updater]\ninterval = 30\n\n\
             [object-auditor]\ninterval = 30\n\n\
             [object-expirer]\ninterval = 10\nprocesses = {processes}\nprocess = {process}\n"
        ),
        Role::Container => format!(
            "\n[container-replicator]\ninterval = 30\nreclaim_age = {age}\n\n\
             [container-updater]\ninterval = 30\n"
        ),
        Role::Account => format!(
            "\n[account-replicator]\ninterval = 30\nreclaim_age = {age}\n\n\
             [account-reaper]\ninterval = 30\n"
        ),
    }
}

fn proxy_file(shape: &Shape, token_secret: &str) -> String {
    let mut out = format!(
        "# proxy-server of a `cairn aio` cluster.\n\
         [server]\n\
         bind_ip = \"{ip}\"\n\
         bind_port = {port}\n\
         cluster_config = \"cairn.toml\"\n\n\
         {proxy}\
         [tempauth]\n\
         token_secret = \"{token_secret}\"\n",
        ip = shape.bind_ip,
        port = shape.proxy_port,
        proxy = proxy_section(shape),
    );
    for (account, user, key, groups) in DEFAULT_USERS {
        let groups: Vec<String> = groups.iter().map(|g| format!("{g:?}")).collect();
        let _ = write!(
            out,
            "\n[[tempauth.user]]\naccount = \"{account}\"\nuser = \"{user}\"\nkey = \"{key}\"\ngroups = [{}]\n",
            groups.join(", ")
        );
    }
    out
}

/// The `[proxy]` table. Account management is on, as in Swift's all-in-one, so that a
/// reseller admin can DELETE an account and the account reaper has something to do; with
/// several regions the proxy sits in region 1 and reads from it first.
fn proxy_section(shape: &Shape) -> String {
    let mut out = "[proxy]\nallow_account_management = true\n".to_string();
    if shape.regions > 1 {
        out.push_str("sorting_method = \"affinity\"\nread_affinity = \"r1=100\"\n");
    }
    out.push('\n');
    out
}

fn mkdir(path: &Path) -> Result<(), AioError> {
    std::fs::create_dir_all(path).map_err(|e| AioError::io(path, e))
}

fn write_new(path: &Path, text: &str) -> Result<(), AioError> {
    cairn_ring::file::write_atomic(path, text.as_bytes())
        .map_err(|e| AioError::Startup(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proxy_table(regions: u16) -> toml::Table {
        let shape = Shape {
            bind_ip: "127.0.0.1".to_string(),
            proxy_port: 8080,
            port_base: 6200,
            nodes: 4,
            replicas: 3,
            part_power: 10,
            reclaim_age: 604_800,
            regions,
        };
        let file: toml::Table = proxy_file(&shape, "secret").parse().unwrap();
        file["proxy"].as_table().cloned().unwrap()
    }

    #[test]
    fn proxy_allows_account_management_in_one_table() {
        let one = proxy_table(1);
        assert_eq!(one["allow_account_management"].as_bool(), Some(true));
        assert!(!one.contains_key("sorting_method"));
        let two = proxy_table(2);
        assert_eq!(two["allow_account_management"].as_bool(), Some(true));
        assert_eq!(two["sorting_method"].as_str(), Some("affinity"));
    }
}
