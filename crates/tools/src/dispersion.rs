//! `cairn dispersion populate|report` (Swift's `swift-dispersion-populate` and
//! `swift-dispersion-report`): plant a sample of containers and objects that covers a
//! percentage of each ring's partitions, then ask every primary storage node directly
//! whether it holds its copy.
//!
//! Names: containers `dispersion_N` (N counts up, a name is used only when its container
//! partition is not covered yet) and, in container `dispersion_objects` (for policy 0;
//! `dispersion_objects_I` for policy I), objects `dispersion_N` picked the same way on the
//! object ring. Everything goes through the proxy as the given TempAuth user; the report
//! lists those names through the proxy and HEADs each copy on the backend
//! (`HEAD /DEV/PART/ACCT/CONT[/OBJ]`). 2xx counts as found; 404 and 507 (unmounted) as
//! missing; no answer or a 5xx is retried, then counted as missing with an error line.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fmt::Write as _;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use cairn_common::config::{ClusterConfig, PolicyConfig};
use cairn_common::http::{authority, backend_path};
use cairn_ring::{HashPathSecret, Ring};
use futures_util::stream::{self, StreamExt};
use http::{Method, StatusCode};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::{json, Map, Value};

use crate::client::{backoff, Http, Session};
use crate::{ToolError, DEFAULT_CLUSTER_CONFIG};

/// Prefix of every dispersion name.
pub const PREFIX: &str = "dispersion_";

/// `cairn dispersion populate|report`.
#[derive(Debug, Clone, clap::Args)]
pub struct DispersionArgs {
    #[command(subcommand)]
    pub command: DispersionCommand,
}

#[derive(Debug, Clone, clap::Subcommand)]
pub enum DispersionCommand {
    /// Create the dispersion containers and objects through the proxy.
    Populate(PopulateArgs),
    /// Check every copy of the dispersion containers and objects on its primary nodes.
    Report(ReportArgs),
}

/// What both verbs share: where the proxy is, who to be, the cluster file.
#[derive(Debug, Clone, clap::Args)]
pub struct CommonArgs {
    /// TempAuth v1 URL of the proxy.
    #[arg(short = 'A', long, default_value = "http://127.0.0.1:8080/auth/v1.0")]
    pub auth: String,
    /// `account:user` (the default is the aio's development user).
    #[arg(short = 'U', long, default_value = "test:tester")]
    pub user: String,
    /// The user's key.
    #[arg(short = 'K', long, default_value = "testing")]
    pub key: String,
    /// The cluster file (hash path secrets, ring directory, policies).
    #[arg(long, default_value = DEFAULT_CLUSTER_CONFIG)]
    pub cluster_config: PathBuf,
    /// The storage policy of the objects (default: the cluster's default policy).
    #[arg(short = 'P', long)]
    pub policy_name: Option<String>,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 25)]
    pub concurrency: usize,
    /// Retries of a request that got no answer or a 5xx.
    #[arg(long, default_value_t = 5)]
    pub retries: u32,
    /// Seconds to connect, and again to get an answer.
    #[arg(long, default_value_t = 10.0)]
    pub timeout: f64,
    /// Only the containers.
    #[arg(long, conflicts_with = "object_only")]
    pub container_only: bool,
    /// Only the objects.
    #[arg(long)]
    pub object_only: bool,
    /// Print JSON instead of text (and no progress bar).
    #[arg(long)]
    pub json: bool,
}

impl CommonArgs {
    /// Defaults for a cluster file and auth URL (for library callers and tests).
    pub fn new(auth: &str, cluster_config: PathBuf) -> CommonArgs {
        CommonArgs {
            auth: auth.to_string(),
            user: "test:tester".into(),
            key: "testing".into(),
            cluster_config,
            policy_name: None,
            concurrency: 25,
            retries: 5,
            timeout: 10.0,
            container_only: false,
            object_only: false,
            json: false,
        }
    }
}

/// `cairn dispersion populate`.
#[derive(Debug, Clone, clap::Args)]
pub struct PopulateArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Percentage of each ring's partitions to cover (at least one partition).
    #[arg(long, default_value_t = 1.0)]
    pub coverage: f64,
}

/// `cairn dispersion report`.
#[derive(Debug, Clone, clap::Args)]
pub struct ReportArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Exit 1 when fewer than this percentage of the copies of either ring are found.
    #[arg(long, default_value_t = 100.0)]
    pub threshold: f64,
    /// Print each partition with missing copies on stderr.
    #[arg(short = 'p', long)]
    pub partitions: bool,
}

/// The cluster as the tools need it: secrets, the container ring, the policy's object ring.
struct Setup {
    secret: HashPathSecret,
    container_ring: Option<Ring>,
    object_ring: Option<Ring>,
    policy: PolicyConfig,
}

fn setup(c: &CommonArgs) -> Result<Setup, ToolError> {
    let config = ClusterConfig::load(&c.cluster_config).map_err(|e| ToolError(e.to_string()))?;
    let policy = match &c.policy_name {
        None => config.default_policy().clone(),
        Some(n) => config
            .policy_by_name(n)
            .cloned()
            .ok_or_else(|| ToolError(format!("no storage policy named {n:?}")))?,
    };
    let load = |name: &str| {
        let path = config.ring_dir().join(name);
        Ring::load(&path).map_err(|e| ToolError(format!("{}: {e}", path.display())))
    };
    let container_ring = if c.object_only {
        None
    } else {
        Some(load("container.ring")?)
    };
    let object_ring = if c.container_only {
        None
    } else {
        Some(load(&policy.ring_name())?)
    };
    if c.concurrency == 0 {
        return Err(ToolError("--concurrency must be at least 1".into()));
    }
    Ok(Setup {
        secret: config.hash_path_secret(),
        container_ring,
        object_ring,
        policy,
    })
}

/// The container holding the dispersion objects of a policy.
pub fn objects_container(policy_index: u32) -> String {
    if policy_index == 0 {
        "dispersion_objects".to_string()
    } else {
        format!("dispersion_objects_{policy_index}")
    }
}

/// Is `name` one of the `dispersion_N` names?
fn is_numbered(name: &str) -> bool {
    name.strip_prefix(PREFIX)
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// How many partitions `coverage` percent of `partition_count` is: Swift's count
/// (the whole part of the product), but at least one and at most all.
pub fn wanted(partition_count: usize, coverage: f64) -> usize {
    let n = (coverage.max(0.0) / 100.0 * partition_count as f64).floor() as usize;
    n.clamp(1, partition_count.max(1))
}

/// `dispersion_0`, `dispersion_1`, … keeping each name whose partition is new, until
/// `want` partitions are covered: `(name, partition)` in order.
pub fn pick_names(
    partition_count: usize,
    want: usize,
    part_of: impl Fn(&str) -> u32,
) -> Vec<(String, u32)> {
    let want = want.min(partition_count);
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(want);
    // Bounded: a hash spreads names evenly, this is many times what is ever needed.
    let limit = (partition_count as u64).saturating_mul(64).max(100_000);
    let mut n = 0u64;
    while out.len() < want && n < limit {
        let name = format!("{PREFIX}{n}");
        let part = part_of(&name);
        if seen.insert(part) {
            out.push((name, part));
        }
        n += 1;
    }
    out
}

fn progress(enabled: bool, len: usize, what: &str) -> Option<ProgressBar> {
    if !enabled || !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = ProgressBar::with_draw_target(Some(len as u64), ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template("{msg} {bar:40} {pos}/{len} ({eta} left)") {
        bar.set_style(style);
    }
    bar.set_message(what.to_string());
    Some(bar)
}

fn runtime() -> Result<tokio::runtime::Runtime, ToolError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| ToolError(format!("cannot start the runtime: {e}")))
}

/// What populate did for one ring.
#[derive(Debug, Clone, PartialEq)]
pub struct PopulateRing {
    /// `container` or `object`.
    pub kind: &'static str,
    /// Names created (in partition-discovery order).
    pub names: Vec<String>,
    pub partition_count: usize,
    pub retries: u64,
    pub elapsed: f64,
}

impl PopulateRing {
    pub fn coverage_pct(&self) -> f64 {
        100.0 * self.names.len() as f64 / self.partition_count.max(1) as f64
    }
}

/// What `cairn dispersion populate` did.
#[derive(Debug, Clone, PartialEq)]
pub struct PopulateSummary {
    pub policy: String,
    pub containers: Option<PopulateRing>,
    pub objects: Option<PopulateRing>,
}

impl PopulateSummary {
    pub fn text(&self) -> String {
        let mut o = String::new();
        let _ = writeln!(o, "Using storage policy: {}", self.policy);
        for r in [&self.containers, &self.objects].into_iter().flatten() {
            let _ = writeln!(
                o,
                "Created {} {}s for dispersion reporting, {:.1}s, {} retries \
                 ({:.2}% of the {} partition space)",
                r.names.len(),
                r.kind,
                r.elapsed,
                r.retries,
                r.coverage_pct(),
                r.kind
            );
        }
        o
    }

    pub fn json(&self) -> Value {
        let ring = |r: &PopulateRing| {
            json!({
                "created": r.names.len(),
                "partition_count": r.partition_count,
                "coverage_pct": r.coverage_pct(),
                "retries": r.retries,
                "elapsed": r.elapsed,
            })
        };
        let mut m = Map::new();
        m.insert("policy".into(), json!(self.policy));
        if let Some(r) = &self.containers {
            m.insert("container".into(), ring(r));
        }
        if let Some(r) = &self.objects {
            m.insert("object".into(), ring(r));
        }
        Value::Object(m)
    }
}

/// PUT each item (container, or object in `container`) with bounded concurrency.
async fn put_all(
    session: &Session,
    items: &[(String, u32)],
    object_container: Option<&str>,
    headers: &[(&str, String)],
    concurrency: usize,
    bar: Option<ProgressBar>,
) -> Result<u64, ToolError> {
    let results: Vec<Result<u32, String>> = stream::iter(items.iter())
        .map(|(name, _)| {
            let bar = bar.clone();
            async move {
                let (container, object, body, hdrs) = match object_container {
                    Some(c) => {
                        let mut h = headers.to_vec();
                        h.push(("X-Object-Meta-Dispersion", name.clone()));
                        h.push(("Content-Type", "text/plain".into()));
                        (c, Some(name.as_str()), Some(Bytes::from(name.clone())), h)
                    }
                    None => (name.as_str(), None, None, headers.to_vec()),
                };
                let (ans, retries) = session
                    .call(Method::PUT, Some(container), object, "", &hdrs, body)
                    .await?;
                if let Some(b) = &bar {
                    b.inc(1);
                }
                if !ans.status.is_success() {
                    let what = object.map_or(container.to_string(), |o| format!("{container}/{o}"));
                    return Err(format!("PUT {what}: {}", ans.status));
                }
                Ok(retries)
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let mut retries = 0u64;
    for r in results {
        retries += u64::from(r.map_err(|e| ToolError(format!("gave up: {e}")))?);
    }
    Ok(retries)
}

/// `cairn dispersion populate`, without printing.
pub fn dispersion_populate(args: &PopulateArgs) -> Result<PopulateSummary, ToolError> {
    let c = &args.common;
    let setup = setup(c)?;
    runtime()?.block_on(async {
        let session =
            Session::login(Http::new(c.timeout), &c.auth, &c.user, &c.key, c.retries).await?;
        let account = session.account.clone();
        let policy_header = vec![("X-Storage-Policy", setup.policy.name.clone())];
        let mut summary = PopulateSummary {
            policy: setup.policy.name.clone(),
            containers: None,
            objects: None,
        };
        if let Some(ring) = &setup.container_ring {
            let begun = Instant::now();
            let count = ring.partition_count();
            let names = pick_names(count, wanted(count, args.coverage), |n| {
                ring.get_part(&setup.secret, &account, Some(n), None)
            });
            let bar = progress(!c.json, names.len(), "Creating containers");
            let retries =
                put_all(&session, &names, None, &policy_header, c.concurrency, bar).await?;
            summary.containers = Some(PopulateRing {
                kind: "container",
                names: names.into_iter().map(|(n, _)| n).collect(),
                partition_count: count,
                retries,
                elapsed: begun.elapsed().as_secs_f64(),
            });
        }
        if let Some(ring) = &setup.object_ring {
            let begun = Instant::now();
            let container = objects_container(setup.policy.index);
            let (ans, retries) = session
                .call(
                    Method::PUT,
                    Some(&container),
                    None,
                    "",
                    &policy_header,
                    None,
                )
                .await
                .map_err(ToolError)?;
            if !ans.status.is_success() {
                return Err(ToolError(format!("PUT {container}: {}", ans.status)));
            }
            let count = ring.partition_count();
            let names = pick_names(count, wanted(count, args.coverage), |n| {
                ring.get_part(&setup.secret, &account, Some(&container), Some(n))
            });
            let bar = progress(!c.json, names.len(), "Creating objects");
            let retries = u64::from(retries)
                + put_all(&session, &names, Some(&container), &[], c.concurrency, bar).await?;
            summary.objects = Some(PopulateRing {
                kind: "object",
                names: names.into_iter().map(|(n, _)| n).collect(),
                partition_count: count,
                retries,
                elapsed: begun.elapsed().as_secs_f64(),
            });
        }
        Ok(summary)
    })
}

/// The report of one ring.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RingReport {
    /// `container` or `object`.
    pub kind: &'static str,
    /// Names the listing returned.
    pub listed: usize,
    /// Distinct partitions among them (each queried once).
    pub partitions: usize,
    /// The ring's partition count.
    pub partition_count: usize,
    pub copies_found: u64,
    pub copies_expected: u64,
    /// Copies missing → partitions missing that many (only counts ≥ 1).
    pub missing: BTreeMap<usize, usize>,
    /// Partitions with missing copies: (partition, copies missing).
    pub missing_partitions: Vec<(u32, usize)>,
    /// The ring's replica count (for "missing all copies").
    pub replicas: usize,
    pub retries: u64,
    pub elapsed: f64,
    /// `ip:port/device` that answered 507.
    pub unmounted: BTreeSet<String>,
    /// Copies given up on (no answer or an unexpected status), one line each.
    pub errors: Vec<String>,
}

impl RingReport {
    /// Percentage of the expected copies found (100 when nothing was expected).
    pub fn pct_found(&self) -> f64 {
        if self.copies_expected == 0 {
            100.0
        } else {
            100.0 * self.copies_found as f64 / self.copies_expected as f64
        }
    }

    /// Percentage of the ring's partitions the sample covers.
    pub fn sample_pct(&self) -> f64 {
        100.0 * self.partitions as f64 / self.partition_count.max(1) as f64
    }

    /// Add one queried partition: `found` of `expected` copies.
    pub fn add(&mut self, part: u32, found: usize, expected: usize) {
        self.partitions += 1;
        self.copies_found += found as u64;
        self.copies_expected += expected as u64;
        let missing = expected.saturating_sub(found);
        if missing > 0 {
            *self.missing.entry(missing).or_default() += 1;
            self.missing_partitions.push((part, missing));
        }
    }

    pub fn text(&self) -> String {
        let mut o = String::new();
        let _ = writeln!(
            o,
            "Queried {} {}s for dispersion reporting, {:.1}s, {} retries",
            self.listed, self.kind, self.elapsed, self.retries
        );
        if self.listed > self.partitions {
            let _ = writeln!(
                o,
                "There were {} overlapping partitions",
                self.listed - self.partitions
            );
        }
        for (&missing, &parts) in &self.missing {
            let _ = writeln!(o, "{}", missing_line(parts, missing, self.replicas));
        }
        let _ = writeln!(
            o,
            "{:.2}% of {} copies found ({} of {})",
            self.pct_found(),
            self.kind,
            self.copies_found,
            self.copies_expected
        );
        let _ = writeln!(
            o,
            "Sample represents {:.2}% of the {} partition space",
            self.sample_pct(),
            self.kind
        );
        o
    }

    /// Swift's JSON keys (`retries`, `overlapping`, `pct_found`, `copies_found`,
    /// `copies_expected`, `missing_N`) plus `listed`, `partitions`, `sample_pct`,
    /// `unmounted`, `errors`.
    pub fn json(&self) -> Value {
        let mut m = Map::new();
        m.insert("retries".into(), json!(self.retries));
        m.insert(
            "overlapping".into(),
            json!(self.listed.saturating_sub(self.partitions)),
        );
        m.insert("pct_found".into(), json!(self.pct_found()));
        m.insert("copies_found".into(), json!(self.copies_found));
        m.insert("copies_expected".into(), json!(self.copies_expected));
        for (missing, parts) in &self.missing {
            m.insert(format!("missing_{missing}"), json!(parts));
        }
        m.insert("listed".into(), json!(self.listed));
        m.insert("partitions".into(), json!(self.partitions));
        m.insert("sample_pct".into(), json!(self.sample_pct()));
        m.insert("unmounted".into(), json!(self.unmounted));
        m.insert("errors".into(), json!(self.errors));
        Value::Object(m)
    }
}

/// `There were 2 partitions missing 1 copy.`, with Swift's `!`/`!!!` marks when only one
/// copy is left or none.
pub fn missing_line(partitions: usize, missing: usize, replicas: usize) -> String {
    let mut marks = "";
    let mut how_many = missing.to_string();
    if missing == replicas {
        marks = "!!! ";
        how_many = "all".into();
    } else if replicas.saturating_sub(missing) == 1 {
        marks = "! ";
    }
    let (verb, noun) = if partitions > 1 {
        ("were", "partitions")
    } else {
        ("was", "partition")
    };
    let copies = if missing == 1 { "copy" } else { "copies" };
    format!("{marks}There {verb} {partitions} {noun} missing {how_many} {copies}.")
}

/// What `cairn dispersion report` found.
#[derive(Debug, Clone, PartialEq)]
pub struct DispersionReport {
    pub policy: String,
    pub container: Option<RingReport>,
    pub object: Option<RingReport>,
    /// Rings that were asked for but have nothing populated.
    pub not_populated: Vec<&'static str>,
    pub threshold: f64,
}

impl DispersionReport {
    /// Every reported ring found at least `threshold` percent of its copies.
    pub fn healthy(&self) -> bool {
        [&self.container, &self.object]
            .into_iter()
            .flatten()
            .all(|r| r.pct_found() >= self.threshold)
    }

    pub fn text(&self) -> String {
        let mut o = String::new();
        let _ = writeln!(o, "Using storage policy: {}", self.policy);
        for kind in &self.not_populated {
            let _ = writeln!(
                o,
                "No {kind}s to query. Has `cairn dispersion populate` been run?"
            );
        }
        for r in [&self.container, &self.object].into_iter().flatten() {
            o.push_str(&r.text());
        }
        if !self.healthy() {
            let _ = writeln!(
                o,
                "BELOW THRESHOLD: fewer than {:.2}% of the copies found",
                self.threshold
            );
        }
        o
    }

    pub fn json(&self) -> Value {
        let mut m = Map::new();
        m.insert("policy".into(), json!(self.policy));
        if let Some(r) = &self.container {
            m.insert("container".into(), r.json());
        }
        if let Some(r) = &self.object {
            m.insert("object".into(), r.json());
        }
        m.insert("not_populated".into(), json!(self.not_populated));
        m.insert("threshold".into(), json!(self.threshold));
        m.insert("healthy".into(), json!(self.healthy()));
        Value::Object(m)
    }
}

/// How one copy answered a backend HEAD.
enum Copy {
    Found,
    Missing,
    Unmounted,
    Failed(String),
}

async fn head_copy(
    http: &Http,
    auth: &str,
    path: &str,
    headers: &[(&str, String)],
    retries: u32,
) -> (Copy, u32) {
    let mut attempt = 0;
    loop {
        let res = http.request(Method::HEAD, auth, path, headers, None).await;
        let outcome = match res {
            Ok(a) if a.status.is_success() => Copy::Found,
            Ok(a) if a.status == StatusCode::NOT_FOUND => Copy::Missing,
            Ok(a) if a.status == StatusCode::INSUFFICIENT_STORAGE => Copy::Unmounted,
            Ok(a) => Copy::Failed(a.status.to_string()),
            Err(e) => Copy::Failed(e),
        };
        if matches!(outcome, Copy::Failed(_)) && attempt < retries {
            attempt += 1;
            tokio::time::sleep(backoff(attempt)).await;
            continue;
        }
        return (outcome, attempt);
    }
}

/// One name per partition to query: (name, partition, primaries as (ip:port, device)).
type Target = (String, u32, Vec<(String, String)>);

async fn query_ring(
    http: &Http,
    report: &mut RingReport,
    targets: Vec<Target>,
    path_of: impl Fn(&str, &str, u32) -> String,
    headers: &[(&str, String)],
    common: &CommonArgs,
) {
    let shared = Arc::new(Mutex::new(std::mem::take(report)));
    let bar = progress(
        !common.json,
        targets.len(),
        &format!("Querying {}s", shared.lock().map(|r| r.kind).unwrap_or("")),
    );
    stream::iter(targets)
        .for_each_concurrent(common.concurrency, |(name, part, nodes)| {
            let shared = shared.clone();
            let bar = bar.clone();
            let path_of = &path_of;
            async move {
                let mut found = 0;
                let mut retries = 0u64;
                let mut errors = Vec::new();
                let mut unmounted = Vec::new();
                for (auth, dev) in &nodes {
                    let path = path_of(dev, &name, part);
                    let (copy, r) = head_copy(http, auth, &path, headers, common.retries).await;
                    retries += u64::from(r);
                    match copy {
                        Copy::Found => found += 1,
                        Copy::Missing => {}
                        Copy::Unmounted => unmounted.push(format!("{auth}/{dev}")),
                        Copy::Failed(e) => {
                            errors.push(format!("giving up on {auth}{path}: {e}"));
                        }
                    }
                }
                if let Ok(mut r) = shared.lock() {
                    r.add(part, found, nodes.len());
                    r.retries += retries;
                    r.errors.extend(errors);
                    r.unmounted.extend(unmounted);
                }
                if let Some(b) = &bar {
                    b.inc(1);
                }
            }
        })
        .await;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let mut done = match Arc::try_unwrap(shared) {
        Ok(m) => m.into_inner().unwrap_or_default(),
        Err(a) => a.lock().map(|r| r.clone()).unwrap_or_default(),
    };
    done.missing_partitions.sort_unstable();
    *report = done;
}

/// Group names by partition (the first name of each partition is queried).
fn targets(ring: &Ring, names: &[String], part_of: impl Fn(&str) -> u32) -> Vec<Target> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for name in names {
        let part = part_of(name);
        if seen.insert(part) {
            let nodes = ring
                .get_part_nodes(part)
                .map(|n| (authority(&n.dev.ip, n.dev.port), n.dev.device.clone()))
                .collect();
            out.push((name.clone(), part, nodes));
        }
    }
    out
}

/// `cairn dispersion report`, without printing.
pub fn dispersion_report(args: &ReportArgs) -> Result<DispersionReport, ToolError> {
    let c = &args.common;
    let setup = setup(c)?;
    runtime()?.block_on(async {
        let http = Http::new(c.timeout);
        let session = Session::login(http.clone(), &c.auth, &c.user, &c.key, c.retries).await?;
        let account = session.account.clone();
        let mut out = DispersionReport {
            policy: setup.policy.name.clone(),
            container: None,
            object: None,
            not_populated: Vec::new(),
            threshold: args.threshold,
        };
        if let Some(ring) = &setup.container_ring {
            let begun = Instant::now();
            let names: Vec<String> = session
                .list(None, PREFIX)
                .await
                .map_err(ToolError)?
                .unwrap_or_default()
                .into_iter()
                .filter(|n| is_numbered(n))
                .collect();
            if names.is_empty() {
                out.not_populated.push("container");
            } else {
                let mut report = RingReport {
                    kind: "container",
                    listed: names.len(),
                    partition_count: ring.partition_count(),
                    replicas: ring.replica_rows(),
                    ..RingReport::default()
                };
                let t = targets(ring, &names, |n| {
                    ring.get_part(&setup.secret, &account, Some(n), None)
                });
                let acct = account.clone();
                query_ring(
                    &http,
                    &mut report,
                    t,
                    move |dev, name, part| backend_path(dev, part, &acct, Some(name), None),
                    &[],
                    c,
                )
                .await;
                report.elapsed = begun.elapsed().as_secs_f64();
                out.container = Some(report);
            }
        }
        if let Some(ring) = &setup.object_ring {
            let begun = Instant::now();
            let container = objects_container(setup.policy.index);
            let names: Vec<String> = session
                .list(Some(&container), PREFIX)
                .await
                .map_err(ToolError)?
                .unwrap_or_default();
            if names.is_empty() {
                out.not_populated.push("object");
            } else {
                let mut report = RingReport {
                    kind: "object",
                    listed: names.len(),
                    partition_count: ring.partition_count(),
                    replicas: ring.replica_rows(),
                    ..RingReport::default()
                };
                let t = targets(ring, &names, |n| {
                    ring.get_part(&setup.secret, &account, Some(&container), Some(n))
                });
                let headers = [(
                    "X-Backend-Storage-Policy-Index",
                    setup.policy.index.to_string(),
                )];
                let (acct, cont) = (account.clone(), container.clone());
                query_ring(
                    &http,
                    &mut report,
                    t,
                    move |dev, name, part| backend_path(dev, part, &acct, Some(&cont), Some(name)),
                    &headers,
                    c,
                )
                .await;
                report.elapsed = begun.elapsed().as_secs_f64();
                out.object = Some(report);
            }
        }
        if out.container.is_none() && out.object.is_none() {
            return Err(ToolError(
                "nothing to query: has `cairn dispersion populate` been run?".into(),
            ));
        }
        Ok(out)
    })
}

/// `cairn dispersion populate|report`: print the summary (text or JSON). Populate exits
/// 0, or 2 when it cannot finish; report exits 1 below `--threshold`, 2 on bad input.
pub fn dispersion(args: DispersionArgs) -> ExitCode {
    match args.command {
        DispersionCommand::Populate(a) => match dispersion_populate(&a) {
            Ok(s) => {
                if a.common.json {
                    println!("{}", s.json());
                } else {
                    print!("{}", s.text());
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("cairn dispersion populate: {e}");
                ExitCode::from(2)
            }
        },
        DispersionCommand::Report(a) => match dispersion_report(&a) {
            Ok(r) => {
                for ring in [&r.container, &r.object].into_iter().flatten() {
                    for dev in &ring.unmounted {
                        eprintln!(
                            "ERROR: {dev} is unmounted -- its {} copies count as missing \
                             until it is fixed or the ring is updated",
                            ring.kind
                        );
                    }
                    for e in &ring.errors {
                        eprintln!("ERROR: {e}");
                    }
                    if a.partitions {
                        for (part, missing) in &ring.missing_partitions {
                            let copies = if *missing == 1 { "copy" } else { "copies" };
                            eprintln!(
                                "# {} partition {part} missing {missing} {copies}",
                                ring.kind
                            );
                        }
                    }
                }
                if a.common.json {
                    println!("{}", r.json());
                } else {
                    print!("{}", r.text());
                }
                if r.healthy() {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::from(1)
                }
            }
            Err(e) => {
                eprintln!("cairn dispersion report: {e}");
                ExitCode::from(2)
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wanted_counts() {
        assert_eq!(wanted(1024, 1.0), 10);
        assert_eq!(wanted(1024, 100.0), 1024);
        assert_eq!(wanted(1024, 200.0), 1024);
        assert_eq!(wanted(4, 1.0), 1);
        assert_eq!(wanted(1024, 0.0), 1);
    }

    #[test]
    fn names_cover_new_partitions_only() {
        // 8 partitions; name N lands in N*3 mod 8 → every name is new until all 8 are used.
        let part = |n: &str| n[PREFIX.len()..].parse::<u32>().unwrap() * 3 % 8;
        let names = pick_names(8, 8, part);
        assert_eq!(names.len(), 8);
        let parts: HashSet<u32> = names.iter().map(|(_, p)| *p).collect();
        assert_eq!(parts.len(), 8);
        // Names collide (N mod 2): only one of each partition is kept.
        let names = pick_names(8, 2, |n| n[PREFIX.len()..].parse::<u32>().unwrap() % 2);
        assert_eq!(
            names,
            vec![
                ("dispersion_0".to_string(), 0),
                ("dispersion_1".to_string(), 1)
            ]
        );
        // Never more than the partitions there are.
        assert_eq!(pick_names(2, 5, |_| 0).len(), 1);
    }

    #[test]
    fn numbered_names() {
        assert!(is_numbered("dispersion_12"));
        assert!(!is_numbered("dispersion_objects"));
        assert!(!is_numbered("dispersion_"));
        assert!(!is_numbered("photos"));
        assert_eq!(objects_container(0), "dispersion_objects");
        assert_eq!(objects_container(2), "dispersion_objects_2");
    }

    #[test]
    fn missing_lines() {
        assert_eq!(
            missing_line(2, 1, 3),
            "There were 2 partitions missing 1 copy."
        );
        assert_eq!(
            missing_line(1, 2, 3),
            "! There was 1 partition missing 2 copies."
        );
        assert_eq!(
            missing_line(3, 3, 3),
            "!!! There were 3 partitions missing all copies."
        );
    }

    fn sample() -> RingReport {
        let mut r = RingReport {
            kind: "object",
            listed: 11,
            partition_count: 1024,
            replicas: 3,
            ..RingReport::default()
        };
        for p in 0..7 {
            r.add(p, 3, 3);
        }
        r.add(7, 2, 3);
        r.add(8, 2, 3);
        r.add(9, 1, 3);
        r
    }

    #[test]
    fn ring_summary_and_rendering() {
        let r = sample();
        assert_eq!(r.partitions, 10);
        assert_eq!((r.copies_found, r.copies_expected), (26, 30));
        assert_eq!(r.missing, BTreeMap::from([(1, 2), (2, 1)]));
        assert_eq!(r.missing_partitions, vec![(7, 1), (8, 1), (9, 2)]);
        assert!((r.pct_found() - 86.666).abs() < 0.01);
        let text = r.text();
        assert!(text.contains("Queried 11 objects"), "{text}");
        assert!(
            text.contains("There were 1 overlapping partitions"),
            "{text}"
        );
        assert!(
            text.contains("There were 2 partitions missing 1 copy."),
            "{text}"
        );
        assert!(
            text.contains("! There was 1 partition missing 2 copies."),
            "{text}"
        );
        assert!(
            text.contains("86.67% of object copies found (26 of 30)"),
            "{text}"
        );
        assert!(text.contains("Sample represents 0.98% of the object partition space"));
        let j = r.json();
        assert_eq!(j["copies_found"], 26);
        assert_eq!(j["copies_expected"], 30);
        assert_eq!(j["missing_1"], 2);
        assert_eq!(j["missing_2"], 1);
        assert_eq!(j["overlapping"], 1);
        assert!(j.get("missing_0").is_none());
    }

    #[test]
    fn threshold_decides_health() {
        let mut full = RingReport {
            kind: "container",
            listed: 1,
            partition_count: 4,
            replicas: 3,
            ..RingReport::default()
        };
        full.add(0, 3, 3);
        let mut rep = DispersionReport {
            policy: "gold".into(),
            container: Some(full),
            object: Some(sample()),
            not_populated: vec![],
            threshold: 100.0,
        };
        assert!(!rep.healthy());
        assert!(rep.text().contains("BELOW THRESHOLD"));
        assert_eq!(rep.json()["healthy"], false);
        rep.threshold = 80.0;
        assert!(rep.healthy());
        assert_eq!(
            rep.json()["object"]["pct_found"].as_f64().unwrap() as u32,
            86
        );
        // Nothing expected counts as everything found.
        assert_eq!(RingReport::default().pct_found(), 100.0);
    }
}
