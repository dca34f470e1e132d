//! The run: validate the arguments into a [`Plan`], authenticate, create containers, let
//! `concurrency` worker tasks claim request numbers from one counter until the count or
//! the duration is reached, then clean up and summarise.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderValue, Method, StatusCode};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use rand::distributions::{Distribution, WeightedIndex};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::client::{self, Call, Endpoint, GenBody, HttpClient, Outcome};
use crate::stats::{CleanupSummary, CpuTime, RunInfo, RunStats, Summary};
use crate::{BenchArgs, BenchError, Mix, Op, Workload};

/// Characters kept as they are in a path segment.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// Requests when neither `--count` nor `--duration` is given.
const DEFAULT_COUNT: u64 = 1000;

/// Validated arguments.
pub(crate) struct Plan {
    pub workload: Workload,
    pub mix: Option<Mix>,
    pub size: u64,
    pub concurrency: usize,
    pub threads: usize,
    pub count: Option<u64>,
    pub duration: Option<Duration>,
    pub containers: u64,
    /// The prefix, percent-encoded for a path segment.
    pub prefix: String,
    /// Objects that exist for get/head/delete (ids 0..objects).
    pub objects: u64,
    /// `--objects` as given, to seed `mixed`.
    pub seed_objects: u64,
    pub cleanup: bool,
    pub verify: bool,
    pub timeout: Duration,
    pub list_limit: u32,
    pub progress: bool,
    pub auth: Auth,
}

/// How to find the storage URL and token.
pub(crate) enum Auth {
    TempAuth {
        url: String,
        user: String,
        key: String,
    },
    Direct {
        storage_url: String,
        token: Option<HeaderValue>,
    },
}

fn usage(msg: impl Into<String>) -> BenchError {
    BenchError::Usage(msg.into())
}

impl Plan {
    pub fn from_args(a: &BenchArgs) -> Result<Plan, BenchError> {
        let workload = a.workload.or(a.op).ok_or_else(|| {
            usage("no workload: give one of put, get, head, delete, list, mixed (or --op)")
        })?;
        let mix = match (workload, a.mix) {
            (Workload::Mixed, m) => Some(m.unwrap_or_default()),
            (_, Some(_)) => return Err(usage("--mix only applies to the mixed workload")),
            (_, None) => None,
        };
        if a.concurrency == 0 || a.concurrency > 65_536 {
            return Err(usage("--concurrency must be between 1 and 65536"));
        }
        if a.threads == 0 || a.threads > 1024 {
            return Err(usage("--threads must be between 1 and 1024"));
        }
        if a.count == Some(0) {
            return Err(usage("--count must be at least 1"));
        }
        if a.containers == 0 || a.containers > 1_000_000 {
            return Err(usage("--containers must be between 1 and 1000000"));
        }
        if a.objects == Some(0) && workload != Workload::Mixed {
            return Err(usage("--objects must be at least 1"));
        }
        if a.prefix.is_empty() || a.prefix.contains('/') || a.prefix.len() > 200 {
            return Err(usage(
                "--prefix must be 1 to 200 characters without '/' (it names containers)",
            ));
        }
        let count = match (a.count, a.duration) {
            (None, None) => Some(DEFAULT_COUNT),
            (c, _) => c,
        };
        let auth =
            match (&a.auth, &a.storage_url) {
                (Some(url), None) => {
                    let url = client::check_url("auth URL", url).map_err(usage)?;
                    let (Some(user), Some(key)) = (&a.user, &a.key) else {
                        return Err(usage("--auth needs -U ACCOUNT:USER and -K KEY"));
                    };
                    if !user.contains(':') {
                        return Err(usage(format!("-U {user:?}: expected ACCOUNT:USER")));
                    }
                    Auth::TempAuth {
                        url,
                        user: user.clone(),
                        key: key.clone(),
                    }
                }
                (None, Some(url)) => {
                    let storage_url = client::check_url("storage URL", url).map_err(usage)?;
                    let token = match &a.token {
                        Some(t) => Some(
                            HeaderValue::from_str(t)
                                .map_err(|_| usage("--token contains characters not allowed"))?,
                        ),
                        None => None,
                    };
                    Auth::Direct { storage_url, token }
                }
                (Some(_), Some(_)) => return Err(usage("give --auth or --storage-url, not both")),
                (None, None) => return Err(usage(
                    "no endpoint: give --auth URL -U ACCOUNT:USER -K KEY, or --storage-url URL \
                     [--token TOKEN]",
                )),
            };
        Ok(Plan {
            workload,
            mix,
            size: a.size,
            concurrency: a.concurrency,
            threads: a.threads,
            count,
            duration: a.duration,
            containers: a.containers,
            prefix: utf8_percent_encode(&a.prefix, SEGMENT).to_string(),
            objects: a.objects.or(count).unwrap_or(DEFAULT_COUNT).max(1),
            seed_objects: a.objects.unwrap_or(0),
            cleanup: a.cleanup,
            verify: a.verify,
            timeout: a.timeout,
            list_limit: a.list_limit,
            progress: !a.no_progress && std::io::stderr().is_terminal(),
            auth,
        })
    }
}

/// What every request needs: the pooled client, the endpoint, the timeout and the
/// number of requests in flight.
#[derive(Clone)]
struct Conn {
    client: HttpClient,
    ep: Endpoint,
    timeout: Duration,
    concurrency: usize,
}

/// Everything the workers share.
struct Shared {
    plan: Plan,
    conn: Conn,
    /// `STORAGE_URL/CONTAINER` per container.
    container_urls: Vec<String>,
    body: Bytes,
    etag: String,
    /// `etag` as a header value.
    etag_header: HeaderValue,
    content_length: HeaderValue,
    /// The next request number to claim.
    next: AtomicU64,
    /// Requests finished (for the progress bar).
    done: AtomicU64,
    stop: Arc<AtomicBool>,
    deadline: Option<Instant>,
    stats: Mutex<RunStats>,
    /// Objects known to exist: written by this run (put, mixed) or seeded (mixed).
    live: Mutex<Live>,
    /// Ids of objects this run wrote (for `--cleanup`); ids seeded by `--objects` are not.
    created: Mutex<Vec<u64>>,
    /// The next object id a `mixed` PUT writes.
    next_put: AtomicU64,
}

/// The objects `mixed` knows to exist, and those being read right now.
///
/// A DELETE takes its object out of the set before it is sent, so no later GET picks it,
/// and never takes one with a GET or HEAD in flight, so no read meets a 404 of the run's
/// own making.
struct Live {
    ids: Vec<u64>,
    busy: HashMap<u64, u32>,
}

impl Live {
    /// A random object to GET or HEAD; [`Live::release`] it afterwards.
    fn borrow_for_read(&mut self, rng: &mut StdRng) -> Option<u64> {
        if self.ids.is_empty() {
            return None;
        }
        let id = self.ids[rng.gen_range(0..self.ids.len())];
        *self.busy.entry(id).or_default() += 1;
        Some(id)
    }

    /// The read of `id` is over.
    fn release(&mut self, id: u64) {
        if let Entry::Occupied(mut e) = self.busy.entry(id) {
            *e.get_mut() -= 1;
            if *e.get() == 0 {
                e.remove();
            }
        }
    }

    /// A random object nobody is reading, removed from the set (a few tries).
    fn take_for_delete(&mut self, rng: &mut StdRng) -> Option<u64> {
        for _ in 0..8 {
            if self.ids.is_empty() {
                return None;
            }
            let k = rng.gen_range(0..self.ids.len());
            if !self.busy.contains_key(&self.ids[k]) {
                return Some(self.ids.swap_remove(k));
            }
        }
        None
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A worker never panics while holding a lock; recover the data if one did.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Shared {
    fn object_url(&self, id: u64) -> String {
        use std::fmt::Write as _;
        let base = &self.container_urls[(id % self.plan.containers) as usize];
        let mut s = String::with_capacity(base.len() + self.plan.prefix.len() + 12);
        let _ = write!(s, "{base}/{}-{id:010}", self.plan.prefix);
        s
    }

    fn call(&self, op: Op, id: u64) -> Call<'_> {
        let verify = self.plan.verify.then_some(self.etag.as_str());
        match op {
            Op::Put => Call {
                method: Method::PUT,
                uri: self.object_url(id),
                body: GenBody::new(self.body.clone(), self.plan.size),
                content_length: Some(&self.content_length),
                send_etag: self.plan.verify.then_some(&self.etag_header),
                verify,
            },
            Op::Get => Call {
                method: Method::GET,
                uri: self.object_url(id),
                body: GenBody::empty(),
                content_length: None,
                // Objects may come from another run: check the body against its ETag.
                send_etag: None,
                verify: self.plan.verify.then_some(""),
            },
            Op::Head | Op::Delete => Call {
                method: if op == Op::Head {
                    Method::HEAD
                } else {
                    Method::DELETE
                },
                uri: self.object_url(id),
                body: GenBody::empty(),
                content_length: None,
                send_etag: None,
                verify: None,
            },
            Op::List => Call {
                method: Method::GET,
                uri: format!(
                    "{}?format=json&limit={}",
                    self.container_urls[(id % self.plan.containers) as usize],
                    self.plan.list_limit
                ),
                body: GenBody::empty(),
                content_length: None,
                send_etag: None,
                verify: None,
            },
        }
    }
}

/// Authenticate, set up, run the workload, clean up, summarise.
pub(crate) async fn execute(plan: Plan) -> Result<Summary, BenchError> {
    let client = client::new_client(plan.concurrency, plan.timeout);
    let ep = match &plan.auth {
        Auth::TempAuth { url, user, key } => {
            client::tempauth(&client, url, user, key, plan.timeout)
                .await
                .map_err(BenchError::Auth)?
        }
        Auth::Direct { storage_url, token } => Endpoint {
            storage_url: storage_url.clone(),
            token: token.clone(),
        },
    };
    let conn = Conn {
        client,
        ep,
        timeout: plan.timeout,
        concurrency: plan.concurrency,
    };
    let container_urls: Vec<String> = (0..plan.containers)
        .map(|c| format!("{}/{}-{c}", conn.ep.storage_url, plan.prefix))
        .collect();

    // Containers first (put, mixed): remember the ones this run created (201).
    let created_containers = match plan.workload {
        Workload::Put | Workload::Mixed => create_containers(&conn, &container_urls).await?,
        _ => Vec::new(),
    };

    let (body, etag) = client::body_buffer(plan.size);
    let seeded: Vec<u64> = if plan.workload == Workload::Mixed {
        (0..plan.seed_objects).collect()
    } else {
        Vec::new()
    };
    let stop = Arc::new(AtomicBool::new(false));
    let interrupt = tokio::spawn(watch_ctrl_c(stop.clone()));
    let shared = Arc::new(Shared {
        content_length: HeaderValue::from(plan.size),
        etag_header: HeaderValue::from_str(&etag)
            .map_err(|_| BenchError::Setup("bad MD5 header value".into()))?,
        next_put: AtomicU64::new(plan.seed_objects),
        deadline: plan.duration.map(|d| Instant::now() + d),
        plan,
        conn,
        container_urls,
        body,
        etag,
        next: AtomicU64::new(0),
        done: AtomicU64::new(0),
        stop,
        stats: Mutex::new(RunStats::default()),
        live: Mutex::new(Live {
            ids: seeded,
            busy: HashMap::new(),
        }),
        created: Mutex::new(Vec::new()),
    });

    let bar = progress_bar(&shared.plan);
    let ticker = bar.clone().map(|b| tokio::spawn(tick(shared.clone(), b)));

    let cpu0 = CpuTime::now();
    let t0 = Instant::now();
    let workers: Vec<_> = (0..shared.plan.concurrency)
        .map(|i| tokio::spawn(worker(shared.clone(), i as u64)))
        .collect();
    for w in workers {
        // A worker only ends by returning; a panic would be a bug, counted as nothing.
        let _ = w.await;
    }
    let elapsed = t0.elapsed();
    let cpu = CpuTime::now().since(&cpu0);

    if let Some(t) = ticker {
        t.abort();
    }
    if let Some(b) = &bar {
        b.finish_and_clear();
    }

    let stats = lock(&shared.stats).clone();
    let plan = &shared.plan;
    let info = RunInfo {
        workload: plan.workload.name().to_string(),
        mix: plan.mix.map(|m| m.to_string()),
        size: plan.size,
        concurrency: plan.concurrency,
        threads: plan.threads,
        containers: plan.containers,
    };
    let mut summary = Summary::new(info, &stats, elapsed, cpu);
    if plan.cleanup {
        summary.cleanup = Some(cleanup(&shared, &created_containers).await);
    }
    interrupt.abort();
    Ok(summary)
}

/// PUT every container; return the indexes of those that did not exist (201).
async fn create_containers(conn: &Conn, urls: &[String]) -> Result<Vec<u64>, BenchError> {
    let results = run_pool(conn, urls.to_vec(), Method::PUT, false, None).await;
    let mut created = Vec::new();
    for (i, (url, outcome)) in urls.iter().zip(results).enumerate() {
        match outcome {
            Outcome::Ok(StatusCode::CREATED, _) => created.push(i as u64),
            Outcome::Ok(..) => {}
            Outcome::Status(s @ (StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN)) => {
                return Err(BenchError::Auth(format!(
                    "cannot create container {url}: {s} (check the token)"
                )))
            }
            Outcome::Status(s) => {
                return Err(BenchError::Setup(format!(
                    "cannot create container {url}: {s}"
                )))
            }
            Outcome::Failed(f) => {
                return Err(BenchError::Setup(format!(
                    "cannot create container {url}: {}",
                    f.describe()
                )))
            }
        }
    }
    Ok(created)
}

/// Send `method` to every URL with up to `concurrency` requests in flight; for container
/// DELETEs (`retry_conflict`) retry 409 a few times (listings may lag).
async fn run_pool(
    conn: &Conn,
    urls: Vec<String>,
    method: Method,
    retry_conflict: bool,
    bar: Option<ProgressBar>,
) -> Vec<Outcome> {
    let urls = Arc::new(urls);
    let next = Arc::new(AtomicU64::new(0));
    let n = urls.len();
    let tasks: Vec<_> = (0..conn.concurrency.min(n))
        .map(|_| {
            let (conn, urls, next, method, bar) = (
                conn.clone(),
                urls.clone(),
                next.clone(),
                method.clone(),
                bar.clone(),
            );
            tokio::spawn(async move {
                let mut out = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                    if i >= urls.len() {
                        break;
                    }
                    let mut tries = 0;
                    let outcome = loop {
                        let call = Call {
                            method: method.clone(),
                            uri: urls[i].clone(),
                            body: GenBody::empty(),
                            content_length: None,
                            send_etag: None,
                            verify: None,
                        };
                        let o = client::send(&conn.client, &conn.ep, call, conn.timeout).await;
                        tries += 1;
                        match o {
                            Outcome::Status(StatusCode::CONFLICT)
                                if retry_conflict && tries < 5 =>
                            {
                                tokio::time::sleep(Duration::from_millis(500)).await;
                            }
                            o => break o,
                        }
                    };
                    out.push((i, outcome));
                    if let Some(b) = &bar {
                        b.inc(1);
                    }
                }
                out
            })
        })
        .collect();
    let mut results = vec![Outcome::Failed(client::Failure::Request); n];
    for t in tasks {
        if let Ok(out) = t.await {
            for (i, o) in out {
                results[i] = o;
            }
        }
    }
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    results
}

/// Delete the objects this run wrote, then the containers it created.
async fn cleanup(sh: &Arc<Shared>, containers: &[u64]) -> CleanupSummary {
    let mut ids = std::mem::take(&mut *lock(&sh.created));
    // In `mixed`, some were deleted already: only what is still live.
    if sh.plan.workload == Workload::Mixed {
        let live: HashSet<u64> = lock(&sh.live).ids.iter().copied().collect();
        ids.retain(|id| live.contains(id));
    }
    let mut summary = CleanupSummary::default();
    let urls: Vec<String> = ids.iter().map(|&id| sh.object_url(id)).collect();
    let bar = cleanup_bar(&sh.plan, "deleting objects", urls.len());
    for o in run_pool(&sh.conn, urls, Method::DELETE, false, bar).await {
        match o {
            Outcome::Ok(..) | Outcome::Status(StatusCode::NOT_FOUND) => {
                summary.objects_deleted += 1
            }
            _ => summary.errors += 1,
        }
    }
    let urls: Vec<String> = containers
        .iter()
        .map(|&c| sh.container_urls[c as usize].clone())
        .collect();
    let bar = cleanup_bar(&sh.plan, "deleting containers", urls.len());
    for o in run_pool(&sh.conn, urls, Method::DELETE, true, bar).await {
        match o {
            Outcome::Ok(..) | Outcome::Status(StatusCode::NOT_FOUND) => {
                summary.containers_deleted += 1
            }
            _ => summary.errors += 1,
        }
    }
    summary
}

/// One of `concurrency` request loops.
async fn worker(sh: Arc<Shared>, n: u64) {
    let mut rng = StdRng::seed_from_u64(0x00ca_1b0b ^ n.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let dist = sh
        .plan
        .mix
        .and_then(|m| WeightedIndex::new(m.weights.iter().copied()).ok());
    loop {
        if sh.stop.load(Ordering::Relaxed) {
            break;
        }
        let i = sh.next.fetch_add(1, Ordering::Relaxed);
        if sh.plan.count.is_some_and(|c| i >= c) {
            break;
        }
        if sh.deadline.is_some_and(|d| Instant::now() >= d) {
            break;
        }
        let (op, id) = choose(&sh, i, dist.as_ref(), &mut rng);
        let call = sh.call(op, id);
        let start = Instant::now();
        let outcome = client::send(&sh.conn.client, &sh.conn.ep, call, sh.conn.timeout).await;
        let latency = start.elapsed();
        let mixed = sh.plan.workload == Workload::Mixed;
        if mixed && matches!(op, Op::Get | Op::Head) {
            lock(&sh.live).release(id);
        }
        if let (Op::Put, Outcome::Ok(..)) = (op, outcome) {
            if mixed {
                lock(&sh.live).ids.push(id);
            }
            if sh.plan.cleanup {
                lock(&sh.created).push(id);
            }
        }
        {
            let mut stats = lock(&sh.stats);
            let s = stats.op(op);
            match outcome {
                Outcome::Ok(_, bytes) => {
                    s.ok += 1;
                    s.bytes += bytes;
                    s.latency.record(latency);
                }
                Outcome::Status(status) => s.error(status.as_str()),
                Outcome::Failed(f) => s.error(f.name()),
            }
        }
        sh.done.fetch_add(1, Ordering::Relaxed);
    }
}

/// The operation and object (or container) id of request number `i`.
fn choose(sh: &Shared, i: u64, dist: Option<&WeightedIndex<u32>>, rng: &mut StdRng) -> (Op, u64) {
    let plan = &sh.plan;
    match plan.workload {
        Workload::Put => (Op::Put, i),
        Workload::Get => (Op::Get, i % plan.objects),
        Workload::Head => (Op::Head, i % plan.objects),
        Workload::Delete => (Op::Delete, i % plan.objects),
        Workload::List => (Op::List, i % plan.containers),
        Workload::Mixed => {
            let op = dist.map(|d| Op::ALL[d.sample(rng)]).unwrap_or(Op::Put);
            match op {
                Op::List => (Op::List, rng.gen_range(0..plan.containers)),
                Op::Get | Op::Head | Op::Delete => {
                    let picked = {
                        let mut live = lock(&sh.live);
                        if op == Op::Delete {
                            live.take_for_delete(rng)
                        } else {
                            live.borrow_for_read(rng)
                        }
                    };
                    match picked {
                        Some(id) => (op, id),
                        // Nothing (idle) to read or delete yet: write instead.
                        None => (Op::Put, sh.next_put.fetch_add(1, Ordering::Relaxed)),
                    }
                }
                Op::Put => (Op::Put, sh.next_put.fetch_add(1, Ordering::Relaxed)),
            }
        }
    }
}

fn progress_bar(plan: &Plan) -> Option<ProgressBar> {
    if !plan.progress {
        return None;
    }
    let (len, template) = match (plan.count, plan.duration) {
        (Some(c), None) => (
            c,
            "{elapsed_precise} [{bar:30}] {pos}/{len} requests, {msg}",
        ),
        (_, Some(d)) => (d.as_millis() as u64, "{elapsed_precise} [{bar:30}] {msg}"),
        (None, None) => (0, "{elapsed_precise} {msg}"),
    };
    let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
    Some(bar)
}

fn cleanup_bar(plan: &Plan, what: &'static str, n: usize) -> Option<ProgressBar> {
    if !plan.progress || n == 0 {
        return None;
    }
    let bar = ProgressBar::with_draw_target(Some(n as u64), ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template("cleanup: {msg} [{bar:30}] {pos}/{len}") {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(what);
    Some(bar)
}

async fn tick(sh: Arc<Shared>, bar: ProgressBar) {
    let t0 = Instant::now();
    let mut interval = tokio::time::interval(Duration::from_millis(200));
    loop {
        interval.tick().await;
        let done = sh.done.load(Ordering::Relaxed);
        let secs = t0.elapsed().as_secs_f64();
        let rate = if secs > 0.0 { done as f64 / secs } else { 0.0 };
        if sh.plan.count.is_some() && sh.plan.duration.is_none() {
            bar.set_position(done);
            bar.set_message(format!("{rate:.0} req/s"));
        } else {
            bar.set_position(t0.elapsed().as_millis() as u64);
            bar.set_message(format!("{done} requests, {rate:.0} req/s"));
        }
    }
}

/// First Ctrl-C: stop issuing requests (the summary and cleanup still run). Second:
/// exit at once.
async fn watch_ctrl_c(stop: Arc<AtomicBool>) {
    loop {
        if tokio::signal::ctrl_c().await.is_err() {
            return;
        }
        if stop.swap(true, Ordering::Relaxed) {
            eprintln!("cairn bench: interrupted");
            std::process::exit(130);
        }
        eprintln!("cairn bench: stopping (Ctrl-C again to quit now)");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deletes_leave_objects_being_read_alone() {
        let mut rng = StdRng::seed_from_u64(1);
        let mut live = Live {
            ids: vec![7],
            busy: HashMap::new(),
        };
        assert_eq!(live.borrow_for_read(&mut rng), Some(7));
        assert_eq!(live.borrow_for_read(&mut rng), Some(7));
        assert_eq!(live.take_for_delete(&mut rng), None);
        live.release(7);
        assert_eq!(live.take_for_delete(&mut rng), None);
        live.release(7);
        assert!(live.busy.is_empty());
        assert_eq!(live.take_for_delete(&mut rng), Some(7));
        assert_eq!(live.borrow_for_read(&mut rng), None);
        assert_eq!(live.take_for_delete(&mut rng), None);
    }
}
