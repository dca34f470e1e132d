//! The account reaper (`cairn account-reaper --config account-server.toml [--once]`,
//! Swift's `swift-account-reaper`): a `DELETE /D/P/A` only marks an account DB
//! `status = 'DELETED'` (`PROTOCOLS.md`, "Account server": "the reaper then deletes its
//! contents"); this daemon, running beside each account server, removes what the account
//! still holds.
//!
//! A pass walks every account DB on the node's devices ([`AccountReaper::run_once`]).
//! An account is reaped when its status is `DELETED`, it still lists containers, its
//! delete is older than `delay_reaping`, and the DB's partition has a primary on this
//! very device. Like Swift since 2.4, every primary of the account reaps a share of the
//! containers (those whose `int(md5(name), 16) % replicas` is its index among the
//! primaries), so that each container is reaped by exactly one node instead of every
//! replica stampeding on the same objects, and one dead primary does not stall the rest.
//! For each of its containers ([`delete`]) it lists the objects from a container
//! primary, deletes every object on all primaries of the container's policy's object ring
//! (fresh `X-Timestamp`, `X-Container-*` update headers so the listing follows), then
//! deletes the container on all its primaries (`X-Account-*` update headers with
//! `X-Account-Override-Deleted: yes`, so the account's row goes too). Failed deletions
//! stay for the next pass; an account with containers left `reap_warn_after` after its
//! delete is logged as a warning.
//!
//! Accounts are reaped one at a time; containers and, inside each, objects run
//! `floor(sqrt(concurrency))` at once (Swift's split of `concurrency`). Stats of each
//! account are logged, and the pass's totals go to the recon cache (`account.recon`,
//! section `reaper`: `reaper_time`, `reaper_last`, `reaper_stats`), from which the
//! account server's `/metrics` exports them. Sits in `cairn-account` above `cairn-db`
//! (the broker), `cairn-ring` and `cairn-common` (client, daemon loop, recon).

mod delete;

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cairn_common::config::ClusterConfig;
use cairn_common::daemon::{run_daemon, Stop};
use cairn_common::http::{authority, check_device, BackendClient, Timeouts};
use cairn_common::recon::ReconCache;
use cairn_common::server_config::{ServerSection, DEFAULT_ACCOUNT_PORT};
use cairn_common::{HashPathSecret, Timestamp};
use cairn_db::daemon::{check_secs, secs};
use cairn_db::{AccountBroker, DbError, ListParams, Listed};
use cairn_ring::{NodeRef, Ring, RingError, RingWatcher};
use futures_util::StreamExt;
use md5::{Digest, Md5};
use serde::{Deserialize, Serialize};
use serde_json::json;

/// Containers listed from the account DB per page and primary (Swift's 1000).
const CONTAINER_PAGE: usize = 1000;

/// The `[account-reaper]` table of `account-server.toml` (Swift's names and defaults).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ReaperSection {
    /// Seconds between the starts of two passes.
    pub interval: f64,
    /// Backend requests in flight: `floor(sqrt(concurrency))` containers at once, each
    /// deleting as many objects at once.
    pub concurrency: usize,
    /// Seconds to connect to a storage server.
    pub conn_timeout: f64,
    /// Seconds to wait for a storage server's answer.
    pub node_timeout: f64,
    /// Seconds an account stays marked deleted before its data is touched (a window in
    /// which an operator can still undo the delete by hand).
    pub delay_reaping: f64,
    /// Seconds after `delay_reaping` at which an account that still has containers is
    /// logged as a warning on every pass.
    pub reap_warn_after: f64,
}

impl Default for ReaperSection {
    fn default() -> Self {
        ReaperSection {
            interval: 3600.0,
            concurrency: 25,
            conn_timeout: 0.5,
            node_timeout: 10.0,
            delay_reaping: 0.0,
            reap_warn_after: 2_592_000.0,
        }
    }
}

impl ReaperSection {
    /// Checks serde cannot express; messages name `account-reaper.KEY`.
    pub fn validate(&self) -> Result<(), String> {
        const TABLE: &str = "account-reaper";
        for (key, v) in [
            ("interval", self.interval),
            ("conn_timeout", self.conn_timeout),
            ("node_timeout", self.node_timeout),
        ] {
            check_secs(TABLE, key, v)?;
        }
        if self.concurrency == 0 {
            return Err(format!("{TABLE}.concurrency must be at least 1"));
        }
        for (key, v) in [
            ("delay_reaping", self.delay_reaping),
            ("reap_warn_after", self.reap_warn_after),
        ] {
            if !(v.is_finite() && (0.0..1e10).contains(&v)) {
                return Err(format!("{TABLE}.{key} must be >= 0 seconds, not {v}"));
            }
        }
        Ok(())
    }

    /// The reaper's settings for a `[server]` table (devices, bind address).
    pub fn settings(&self, server: &ServerSection) -> ReaperSettings {
        ReaperSettings {
            devices: server.devices.clone(),
            mount_check: server.mount_check,
            bind_ip: server.bind_ip,
            bind_port: server.bind_port.unwrap_or(DEFAULT_ACCOUNT_PORT),
            interval: secs(self.interval),
            concurrency: self.concurrency,
            timeouts: Timeouts {
                conn: secs(self.conn_timeout),
                node: secs(self.node_timeout),
            },
            delay_reaping: self.delay_reaping,
            reap_warn_after: self.reap_warn_after,
        }
    }
}

/// What the reaper needs to know, from `account-server.toml`.
#[derive(Debug, Clone)]
pub struct ReaperSettings {
    pub devices: PathBuf,
    pub mount_check: bool,
    /// This account server's address: a ring device is local when its `ip` is this one
    /// (any, for an unspecified address) and its `port` is `bind_port`.
    pub bind_ip: IpAddr,
    pub bind_port: u16,
    pub interval: Duration,
    pub concurrency: usize,
    pub timeouts: Timeouts,
    /// Seconds (see [`ReaperSection::delay_reaping`]).
    pub delay_reaping: f64,
    /// Seconds (see [`ReaperSection::reap_warn_after`]).
    pub reap_warn_after: f64,
}

impl ReaperSettings {
    /// Containers reaped at once, and objects at once inside each (Swift: `sqrt`).
    pub fn width(&self) -> usize {
        ((self.concurrency as f64).sqrt().floor() as usize).max(1)
    }
}

/// Why the reaper could not start, or could not read an account.
#[derive(Debug, thiserror::Error)]
pub enum ReapError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("{}", ring_message(path, source))]
    Ring { path: PathBuf, source: RingError },
    #[error("blocking task failed: {0}")]
    Task(String),
}

/// The rings the reaper follows: accounts (is this node a primary?), containers, and the
/// object ring of each storage policy of the cluster file.
#[derive(Debug)]
pub struct ReaperRings {
    account: RingWatcher,
    container: RingWatcher,
    objects: Vec<(u32, RingWatcher)>,
}

/// A ring error names its file only when it is a file error; name it for the others.
fn ring_message(path: &Path, e: &RingError) -> String {
    match e {
        RingError::File(_) => e.to_string(),
        _ => format!("{}: {e}", path.display()),
    }
}

fn watch(path: PathBuf) -> Result<RingWatcher, ReapError> {
    RingWatcher::new(&path).map_err(|source| ReapError::Ring { path, source })
}

impl ReaperRings {
    /// Load the account and container rings (both required) and each policy's object ring
    /// (a missing one is logged; objects of that policy then stay, counted as remaining).
    pub fn load(cluster: &ClusterConfig) -> Result<ReaperRings, ReapError> {
        let dir = cluster.ring_dir();
        let mut objects = Vec::new();
        for p in &cluster.policies {
            match watch(dir.join(p.ring_name())) {
                Ok(w) => objects.push((p.index, w)),
                Err(e) => tracing::error!(policy = p.index, error = %e, "no object ring"),
            }
        }
        Ok(ReaperRings {
            account: watch(dir.join("account.ring"))?,
            container: watch(dir.join("container.ring"))?,
            objects,
        })
    }

    /// The rings for one pass (each reloaded first if its file changed).
    pub fn snapshot(&self) -> PassRings {
        let current = |w: &RingWatcher| {
            if let Err(e) = w.check_reload() {
                tracing::warn!(ring = %w.path().display(), error = %e, "ring reload failed; keeping the old ring");
            }
            w.current()
        };
        PassRings {
            account: current(&self.account),
            container: current(&self.container),
            objects: self.objects.iter().map(|(i, w)| (*i, current(w))).collect(),
        }
    }
}

/// The rings one pass works with.
#[derive(Debug, Clone)]
pub struct PassRings {
    pub account: Arc<Ring>,
    pub container: Arc<Ring>,
    pub objects: HashMap<u32, Arc<Ring>>,
}

/// A storage node, owned so that no ring borrow crosses an await.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Node {
    pub authority: String,
    pub device: String,
}

impl From<&NodeRef<'_>> for Node {
    fn from(n: &NodeRef<'_>) -> Self {
        Node {
            authority: authority(&n.ip, n.port),
            device: n.device.clone(),
        }
    }
}

/// Counters of one account, or of a whole pass (Swift's reaper stats plus return codes
/// by class; `no_response` counts connect failures and timeouts).
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct ReapStats {
    /// Deleted accounts whose containers this node worked on.
    pub accounts_reaped: u64,
    /// Deleted accounts left alone because of `delay_reaping`.
    pub accounts_delayed: u64,
    pub containers_deleted: u64,
    pub containers_remaining: u64,
    pub containers_possibly_remaining: u64,
    /// Container DELETEs a primary refused or did not answer.
    pub containers_failures: u64,
    pub objects_deleted: u64,
    pub objects_remaining: u64,
    pub objects_possibly_remaining: u64,
    /// Object DELETEs a primary refused or did not answer.
    pub objects_failures: u64,
    /// Backend answers by class (`"2"`, `"4"`, `"5"`).
    pub return_codes: BTreeMap<String, u64>,
    pub no_response: u64,
    /// Account DBs or listings that could not be read.
    pub errors: u64,
}

impl ReapStats {
    /// Add `o`'s counters to these.
    pub fn absorb(&mut self, o: &ReapStats) {
        self.accounts_reaped += o.accounts_reaped;
        self.accounts_delayed += o.accounts_delayed;
        self.containers_deleted += o.containers_deleted;
        self.containers_remaining += o.containers_remaining;
        self.containers_possibly_remaining += o.containers_possibly_remaining;
        self.containers_failures += o.containers_failures;
        self.objects_deleted += o.objects_deleted;
        self.objects_remaining += o.objects_remaining;
        self.objects_possibly_remaining += o.objects_possibly_remaining;
        self.objects_failures += o.objects_failures;
        for (k, v) in &o.return_codes {
            *self.return_codes.entry(k.clone()).or_default() += v;
        }
        self.no_response += o.no_response;
        self.errors += o.errors;
    }

    /// Count one backend answer (`None`: no answer).
    pub(crate) fn answer(&mut self, status: Option<u16>) {
        match status {
            Some(s) => *self.return_codes.entry((s / 100).to_string()).or_default() += 1,
            None => self.no_response += 1,
        }
    }
}

/// What became of one object or container after a DELETE to each of its primaries
/// (Swift's rule: more successes than failures is deleted, none is remaining).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Deleted,
    PossiblyRemaining,
    Remaining,
}

impl Outcome {
    pub fn of(successes: usize, failures: usize) -> Outcome {
        if successes > failures {
            Outcome::Deleted
        } else if successes == 0 {
            Outcome::Remaining
        } else {
            Outcome::PossiblyRemaining
        }
    }
}

/// The share of `container` among `replicas` account primaries: Swift's
/// `int(md5(name).hexdigest(), 16) % replicas`.
pub fn container_shard(container: &str, replicas: usize) -> usize {
    let digest: [u8; 16] = Md5::digest(container.as_bytes()).into();
    (u128::from_be_bytes(digest) % replicas.max(1) as u128) as usize
}

/// Is a ring device's `ip` this server's `bind_ip` (an unspecified bind address is
/// every address)?
fn ip_is_mine(bind_ip: IpAddr, ip: &str) -> bool {
    bind_ip.is_unspecified()
        || ip
            .trim_matches(['[', ']'])
            .parse::<IpAddr>()
            .is_ok_and(|a| a == bind_ip)
}

/// The index among `nodes` (a partition's primaries) of this server's `device`, if it is
/// one of them.
pub(crate) fn local_index(
    nodes: &[NodeRef<'_>],
    bind_ip: IpAddr,
    bind_port: u16,
    device: &str,
) -> Option<usize> {
    nodes
        .iter()
        .position(|n| n.port == bind_port && n.device == device && ip_is_mine(bind_ip, &n.ip))
}

/// An account DB marked deleted that this node (as primary `shard`) has to reap.
#[derive(Debug, Clone)]
struct Candidate {
    db: PathBuf,
    account: String,
    delete_ts: Timestamp,
    part: u32,
    nodes: Vec<Node>,
    shard: usize,
}

/// The account name and delete time of a DB that is `DELETED` and still lists
/// containers; `None` for any other DB.
fn deleted_account(db: &Path) -> Result<Option<(String, Timestamp)>, DbError> {
    let broker = AccountBroker::open(db)?;
    if !broker.is_status_deleted()? {
        return Ok(None);
    }
    let info = broker.get_info()?;
    if info.container_count <= 0 {
        return Ok(None);
    }
    Ok(Some((info.account, info.delete_timestamp)))
}

/// Deleted accounts on `device` whose partition has this device among its primaries.
/// Blocking: runs on the blocking pool.
fn find_candidates(
    settings: &ReaperSettings,
    ring: &Ring,
    device: &str,
    stats: &mut ReapStats,
) -> Vec<Candidate> {
    let datadir = settings.devices.join(device).join("accounts");
    let mut out = Vec::new();
    for (part, db) in cairn_db::replicator::list_dbs(&datadir) {
        let primaries = ring.get_part_nodes_vec(part);
        let Some(shard) = local_index(&primaries, settings.bind_ip, settings.bind_port, device)
        else {
            continue;
        };
        match deleted_account(&db) {
            Ok(Some((account, delete_ts))) => out.push(Candidate {
                db,
                account,
                delete_ts,
                part,
                nodes: primaries.iter().map(Node::from).collect(),
                shard,
            }),
            Ok(None) | Err(DbError::NotFound(_)) => {}
            Err(e) => {
                tracing::error!(db = %db.display(), error = %e, "cannot read account DB");
                stats.errors += 1;
            }
        }
    }
    out
}

/// Device directories under the devices root that pass the mount check.
fn devices(settings: &ReaperSettings) -> Vec<String> {
    let Ok(rd) = std::fs::read_dir(&settings.devices) else {
        tracing::warn!(devices = %settings.devices.display(), "cannot read the devices root");
        return Vec::new();
    };
    let mut out: Vec<String> = rd
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(
            |d| match check_device(&settings.devices, d, settings.mount_check) {
                Ok(_) => true,
                Err(e) => {
                    tracing::debug!(device = %d, error = %e, "skipping device");
                    false
                }
            },
        )
        .collect();
    out.sort();
    out
}

/// One page of live container names of an account DB, after `marker`.
fn container_page(db: &Path, marker: &str, limit: usize) -> Result<Vec<String>, DbError> {
    let broker = AccountBroker::open(db)?;
    let params = ListParams {
        marker: marker.to_string(),
        ..ListParams::with_limit(limit)
    };
    Ok(broker
        .list_containers_iter(&params)?
        .into_iter()
        .map(|l| match l {
            Listed::Item(c) => c.name,
            Listed::Subdir(s) => s,
        })
        .collect())
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ReapError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ReapError::Task(e.to_string()))
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// One account being reaped: where it lives and its running stats (shared by the
/// container and object tasks).
pub(crate) struct AccountPass<'a> {
    pub account: String,
    pub part: u32,
    pub nodes: Vec<Node>,
    pub rings: &'a PassRings,
    pub stop: &'a Stop,
    pub stats: Mutex<ReapStats>,
    pub trans_id: String,
}

impl AccountPass<'_> {
    /// Update the stats (never held across an await).
    pub fn count(&self, f: impl FnOnce(&mut ReapStats)) {
        f(&mut self.stats.lock().unwrap_or_else(|e| e.into_inner()));
    }
}

/// The account reaper of one node. Cheap to clone.
#[derive(Clone)]
pub struct AccountReaper {
    pub(crate) settings: Arc<ReaperSettings>,
    pub(crate) secret: HashPathSecret,
    pub(crate) client: BackendClient,
}

impl AccountReaper {
    pub fn new(settings: ReaperSettings, secret: HashPathSecret) -> Self {
        let client = BackendClient::new(settings.timeouts);
        AccountReaper {
            settings: Arc::new(settings),
            secret,
            client,
        }
    }

    pub fn settings(&self) -> &ReaperSettings {
        &self.settings
    }

    /// One pass over every device: reap each deleted account this node is a primary of.
    pub async fn run_once(&self, rings: &PassRings, stop: &Stop) -> ReapStats {
        let s = self.settings.clone();
        let devs = blocking(move || devices(&s)).await.unwrap_or_default();
        let mut total = ReapStats::default();
        for device in devs {
            if stop.is_stopped() {
                break;
            }
            let (s, ring, dev) = (self.settings.clone(), rings.account.clone(), device.clone());
            let found = blocking(move || {
                let mut st = ReapStats::default();
                let c = find_candidates(&s, &ring, &dev, &mut st);
                (c, st)
            })
            .await;
            let candidates = match found {
                Ok((c, st)) => {
                    total.absorb(&st);
                    c
                }
                Err(e) => {
                    tracing::error!(%device, error = %e, "cannot walk the account DBs");
                    total.errors += 1;
                    continue;
                }
            };
            for c in candidates {
                if stop.is_stopped() {
                    break;
                }
                total.absorb(&self.reap_account(c, rings, stop).await);
            }
        }
        total
    }

    /// Reap one account's share of containers, unless its delete is too recent.
    async fn reap_account(&self, c: Candidate, rings: &PassRings, stop: &Stop) -> ReapStats {
        let begin = unix_now();
        let age = begin - c.delete_ts.as_f64();
        if age <= self.settings.delay_reaping {
            tracing::debug!(account = %c.account, age_s = age, "deleted account not due yet");
            return ReapStats {
                accounts_delayed: 1,
                ..Default::default()
            };
        }
        tracing::info!(account = %c.account, shard = c.shard, "beginning pass on account");
        let started = Instant::now();
        let pass = AccountPass {
            account: c.account.clone(),
            part: c.part,
            nodes: c.nodes.clone(),
            rings,
            stop,
            stats: Mutex::new(ReapStats {
                accounts_reaped: 1,
                ..Default::default()
            }),
            trans_id: cairn_common::http::new_trans_id(),
        };
        let complete = self.reap_containers(&pass, &c).await;
        let stats = pass.stats.into_inner().unwrap_or_else(|e| e.into_inner());
        tracing::info!(
            account = %c.account,
            complete,
            containers_deleted = stats.containers_deleted,
            objects_deleted = stats.objects_deleted,
            containers_remaining = stats.containers_remaining,
            objects_remaining = stats.objects_remaining,
            containers_possibly_remaining = stats.containers_possibly_remaining,
            objects_possibly_remaining = stats.objects_possibly_remaining,
            return_codes = ?stats.return_codes,
            no_response = stats.no_response,
            elapsed_s = started.elapsed().as_secs_f64(),
            "{} pass on account",
            if complete { "completed" } else { "incomplete" }
        );
        if stats.containers_remaining > 0
            && age >= self.settings.reap_warn_after + self.settings.delay_reaping
        {
            tracing::warn!(
                account = %c.account,
                deleted_at = %c.delete_ts.normal(),
                "account has not been reaped since its delete"
            );
        }
        stats
    }

    /// Walk the account DB's containers page by page and reap those of this node's
    /// share; `false` when the listing failed or a stop cut the walk short.
    async fn reap_containers(&self, pass: &AccountPass<'_>, c: &Candidate) -> bool {
        let replicas = c.nodes.len();
        let limit = CONTAINER_PAGE * replicas.max(1);
        let mut marker = String::new();
        loop {
            if pass.stop.is_stopped() {
                return false;
            }
            let (db, m) = (c.db.clone(), marker.clone());
            let page = match blocking(move || container_page(&db, &m, limit)).await {
                Ok(Ok(p)) => p,
                Ok(Err(e)) => return self.listing_failed(pass, &e.to_string()),
                Err(e) => return self.listing_failed(pass, &e.to_string()),
            };
            let Some(last) = page.last().cloned() else {
                return true;
            };
            let mine = page
                .iter()
                .filter(|name| container_shard(name, replicas) == c.shard);
            futures_util::stream::iter(mine)
                .map(|name| self.reap_container(pass, name))
                .buffer_unordered(self.settings.width())
                .collect::<Vec<()>>()
                .await;
            // The listing is sorted: a page that does not move the marker would loop.
            if last <= marker {
                return true;
            }
            marker = last;
        }
    }

    fn listing_failed(&self, pass: &AccountPass<'_>, error: &str) -> bool {
        tracing::error!(account = %pass.account, error, "cannot list the account's containers");
        pass.count(|s| s.errors += 1);
        false
    }
}

/// The recon `reaper` section of a pass.
pub fn recon_value(stats: &ReapStats, elapsed: f64) -> serde_json::Value {
    json!({
        "reaper_time": elapsed,
        "reaper_last": unix_now(),
        "reaper_stats": stats,
    })
}

/// One pass: reap, log the totals and write them to the recon cache.
pub async fn run_pass(
    reaper: &AccountReaper,
    rings: &ReaperRings,
    stop: &Stop,
    recon: Option<&ReconCache>,
) -> ReapStats {
    let begin = Instant::now();
    let stats = reaper.run_once(&rings.snapshot(), stop).await;
    let elapsed = begin.elapsed().as_secs_f64();
    tracing::info!(
        accounts_reaped = stats.accounts_reaped,
        accounts_delayed = stats.accounts_delayed,
        containers_deleted = stats.containers_deleted,
        objects_deleted = stats.objects_deleted,
        containers_remaining = stats.containers_remaining,
        objects_remaining = stats.objects_remaining,
        failures = stats.containers_failures + stats.objects_failures,
        errors = stats.errors,
        elapsed_s = elapsed,
        "devices pass completed"
    );
    if let Some(recon) = recon {
        if let Err(e) = recon
            .update_async("reaper", recon_value(&stats, elapsed))
            .await
        {
            tracing::warn!(error = %e, "cannot write the recon cache");
        }
    }
    stats
}

/// Run the reaper every `interval` (or once) until SIGTERM/SIGINT; `recon_dir` holds
/// `account.recon` (`None`: not written).
pub async fn run_reaper(
    reaper: AccountReaper,
    rings: ReaperRings,
    recon_dir: Option<PathBuf>,
    once: bool,
) -> std::io::Result<()> {
    let recon = recon_dir.map(|d| ReconCache::new(&d, "account"));
    let interval = reaper.settings().interval;
    let (reaper, rings) = (Arc::new(reaper), Arc::new(rings));
    run_daemon("account-reaper", interval, once, move |stop| {
        let (reaper, rings, recon) = (reaper.clone(), rings.clone(), recon.clone());
        async move {
            run_pass(&reaper, &rings, &stop, recon.as_ref()).await;
        }
    })
    .await
}

#[cfg(test)]
mod tests;
