//! What a run measures: per-operation counts, bytes, an HDR latency histogram and error
//! counts by status, the process's own CPU time, and the [`Summary`] printed at the end
//! (as text, or as JSON with `--json`).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::Op;

/// Highest latency the histogram tracks exactly, in microseconds (one hour); longer
/// requests are recorded as this value.
const MAX_LATENCY_US: u64 = 3_600_000_000;

/// A latency histogram in microseconds, 3 significant digits (≤ 0.1 % error).
#[derive(Debug, Clone)]
pub struct Latency {
    hist: Histogram<u64>,
}

impl Default for Latency {
    fn default() -> Self {
        Self::new()
    }
}

impl Latency {
    /// An empty histogram.
    pub fn new() -> Self {
        // Bounds and precision are constants that `new_with_bounds` accepts.
        let hist = match Histogram::new_with_bounds(1, MAX_LATENCY_US, 3) {
            Ok(h) => h,
            Err(_) => unreachable!("constant histogram bounds are valid"),
        };
        Latency { hist }
    }

    /// Record one request's latency.
    pub fn record(&mut self, d: Duration) {
        let us = u64::try_from(d.as_micros())
            .unwrap_or(MAX_LATENCY_US)
            .clamp(1, MAX_LATENCY_US);
        self.hist.saturating_record(us);
    }

    /// Add another histogram's samples.
    pub fn merge(&mut self, other: &Latency) {
        // Same bounds on both sides, so `add` cannot fail.
        let _ = self.hist.add(&other.hist);
    }

    /// Number of samples.
    pub fn len(&self) -> u64 {
        self.hist.len()
    }

    /// True when no sample was recorded.
    pub fn is_empty(&self) -> bool {
        self.hist.is_empty()
    }

    /// The value at quantile `q` (0.0–1.0) in microseconds, 0 when empty.
    pub fn quantile_us(&self, q: f64) -> u64 {
        if self.hist.is_empty() {
            return 0;
        }
        self.hist.value_at_quantile(q)
    }

    /// p50/p90/p99/max and mean in milliseconds.
    pub fn summary(&self) -> LatencySummary {
        let ms = |us: u64| us as f64 / 1000.0;
        LatencySummary {
            samples: self.len(),
            mean: if self.is_empty() {
                0.0
            } else {
                self.hist.mean() / 1000.0
            },
            p50: ms(self.quantile_us(0.50)),
            p90: ms(self.quantile_us(0.90)),
            p99: ms(self.quantile_us(0.99)),
            max: ms(if self.is_empty() { 0 } else { self.hist.max() }),
        }
    }
}

/// Latency percentiles of the successful requests, in milliseconds.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct LatencySummary {
    /// Number of latencies recorded.
    pub samples: u64,
    /// Arithmetic mean.
    pub mean: f64,
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Slowest request.
    pub max: f64,
}

/// Counters for one operation kind.
#[derive(Debug, Clone, Default)]
pub struct OpStats {
    /// Successful requests (2xx, body read fully, ETag good when verified).
    pub ok: u64,
    /// Failed requests, by reason: the HTTP status (`"404"`) or a client-side failure
    /// (`"connect"`, `"timeout"`, `"body"`, `"etag"`, …).
    pub errors: BTreeMap<String, u64>,
    /// Body bytes sent (PUT) or received (GET, listings).
    pub bytes: u64,
    /// Latency of the successful requests.
    pub latency: Latency,
}

impl OpStats {
    /// Count one failure.
    pub fn error(&mut self, reason: &str) {
        match self.errors.get_mut(reason) {
            Some(n) => *n += 1,
            None => {
                self.errors.insert(reason.to_string(), 1);
            }
        }
    }

    /// Total failures.
    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }

    /// Add another set of counters.
    pub fn merge(&mut self, other: &OpStats) {
        self.ok += other.ok;
        self.bytes += other.bytes;
        for (k, v) in &other.errors {
            *self.errors.entry(k.clone()).or_default() += v;
        }
        self.latency.merge(&other.latency);
    }
}

/// Counters for every operation kind of a run.
#[derive(Debug, Clone, Default)]
pub struct RunStats {
    /// Indexed by [`Op::index`].
    pub ops: [OpStats; Op::COUNT],
}

impl RunStats {
    /// Counters of one operation.
    pub fn op(&mut self, op: Op) -> &mut OpStats {
        &mut self.ops[op.index()]
    }

    /// Add another run's counters.
    pub fn merge(&mut self, other: &RunStats) {
        for (a, b) in self.ops.iter_mut().zip(other.ops.iter()) {
            a.merge(b);
        }
    }

    /// All operations together.
    pub fn total(&self) -> OpStats {
        let mut t = OpStats::default();
        for s in &self.ops {
            t.merge(s);
        }
        t
    }
}

/// CPU time this process used, from `getrusage(RUSAGE_SELF)`.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CpuTime {
    /// User time.
    pub user: Duration,
    /// System time.
    pub sys: Duration,
}

impl CpuTime {
    /// The process's CPU time so far (zero if `getrusage` fails).
    pub fn now() -> CpuTime {
        // SAFETY: `getrusage` only writes into the zeroed struct we pass.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: valid pointer to a `rusage`, RUSAGE_SELF is a valid `who`.
        let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
        if rc != 0 {
            return CpuTime::default();
        }
        let tv = |t: libc::timeval| {
            Duration::from_secs(t.tv_sec.max(0) as u64)
                + Duration::from_micros(t.tv_usec.max(0) as u64)
        };
        CpuTime {
            user: tv(ru.ru_utime),
            sys: tv(ru.ru_stime),
        }
    }

    /// CPU used since `earlier`.
    pub fn since(&self, earlier: &CpuTime) -> CpuTime {
        CpuTime {
            user: self.user.saturating_sub(earlier.user),
            sys: self.sys.saturating_sub(earlier.sys),
        }
    }
}

/// The per-operation part of a [`Summary`].
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct OpSummary {
    /// Successful requests.
    pub ok: u64,
    /// Failed requests.
    pub errors: u64,
    /// Body bytes moved.
    pub bytes: u64,
    /// Successful requests per second.
    pub ops_per_sec: f64,
    /// Latency of the successful requests.
    pub latency_ms: LatencySummary,
    /// Failures by status or reason.
    pub errors_by_status: BTreeMap<String, u64>,
}

impl OpSummary {
    fn new(s: &OpStats, secs: f64) -> OpSummary {
        OpSummary {
            ok: s.ok,
            errors: s.error_count(),
            bytes: s.bytes,
            ops_per_sec: rate(s.ok as f64, secs),
            latency_ms: s.latency.summary(),
            errors_by_status: s.errors.clone(),
        }
    }
}

/// Client CPU use during the measured phase.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CpuSummary {
    /// User seconds.
    pub user_sec: f64,
    /// System seconds.
    pub sys_sec: f64,
    /// (user + sys) / requests, in microseconds.
    pub us_per_request: f64,
}

/// The result of a run (`--json` prints it as is).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Summary {
    /// `put`, `get`, `head`, `delete`, `list` or `mixed`.
    pub workload: String,
    /// The mix, for `mixed`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mix: Option<String>,
    /// Object size in bytes.
    pub size: u64,
    /// Concurrent requests.
    pub concurrency: usize,
    /// Runtime worker threads.
    pub threads: usize,
    /// Containers spread over.
    pub containers: u64,
    /// Wall time of the measured phase.
    pub elapsed_sec: f64,
    /// Requests issued (ok + errors).
    pub requests: u64,
    /// Successful requests.
    pub ok: u64,
    /// Failed requests.
    pub errors: u64,
    /// Successful requests per second.
    pub ops_per_sec: f64,
    /// Body bytes moved (sent and received).
    pub bytes: u64,
    /// Body bytes per second, in 10^6 bytes.
    pub mb_per_sec: f64,
    /// Latency of the successful requests.
    pub latency_ms: LatencySummary,
    /// Failures by status or reason.
    pub errors_by_status: BTreeMap<String, u64>,
    /// The client's own CPU time.
    pub cpu: CpuSummary,
    /// Per operation (only those that ran).
    pub per_op: BTreeMap<String, OpSummary>,
    /// What `--cleanup` did, when asked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cleanup: Option<CleanupSummary>,
}

/// What `--cleanup` deleted.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct CleanupSummary {
    /// Objects deleted (204, or 404: already gone).
    pub objects_deleted: u64,
    /// Containers deleted.
    pub containers_deleted: u64,
    /// Deletes that failed.
    pub errors: u64,
}

fn rate(n: f64, secs: f64) -> f64 {
    if secs > 0.0 {
        n / secs
    } else {
        0.0
    }
}

/// What the summary needs to know about the run besides its counters.
pub struct RunInfo {
    /// Workload name.
    pub workload: String,
    /// The mix, for `mixed`.
    pub mix: Option<String>,
    /// Object size.
    pub size: u64,
    /// Concurrent requests.
    pub concurrency: usize,
    /// Runtime threads.
    pub threads: usize,
    /// Containers.
    pub containers: u64,
}

impl Summary {
    /// Build the summary of a run.
    pub fn new(info: RunInfo, stats: &RunStats, elapsed: Duration, cpu: CpuTime) -> Summary {
        let secs = elapsed.as_secs_f64();
        let total = stats.total();
        let errors = total.error_count();
        let requests = total.ok + errors;
        let cpu_us = (cpu.user + cpu.sys).as_secs_f64() * 1e6;
        let per_op = Op::ALL
            .iter()
            .filter_map(|&op| {
                let s = &stats.ops[op.index()];
                (s.ok > 0 || s.error_count() > 0)
                    .then(|| (op.name().to_string(), OpSummary::new(s, secs)))
            })
            .collect();
        Summary {
            workload: info.workload,
            mix: info.mix,
            size: info.size,
            concurrency: info.concurrency,
            threads: info.threads,
            containers: info.containers,
            elapsed_sec: secs,
            requests,
            ok: total.ok,
            errors,
            ops_per_sec: rate(total.ok as f64, secs),
            bytes: total.bytes,
            mb_per_sec: rate(total.bytes as f64 / 1e6, secs),
            latency_ms: total.latency.summary(),
            errors_by_status: total.errors.clone(),
            cpu: CpuSummary {
                user_sec: cpu.user.as_secs_f64(),
                sys_sec: cpu.sys.as_secs_f64(),
                us_per_request: rate(cpu_us, requests as f64),
            },
            per_op,
            cleanup: None,
        }
    }

    /// The summary for people.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let mix = self
            .mix
            .as_ref()
            .map(|m| format!(" ({m})"))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "{}{mix}: {} requests in {:.2} s; size {}, concurrency {}, {} thread{}, {} container{}",
            self.workload,
            self.requests,
            self.elapsed_sec,
            crate::parse::human_bytes(self.size),
            self.concurrency,
            self.threads,
            if self.threads == 1 { "" } else { "s" },
            self.containers,
            if self.containers == 1 { "" } else { "s" },
        );
        let _ = writeln!(out, "  ok          {}", self.ok);
        let _ = writeln!(out, "  errors      {}", self.errors);
        let _ = writeln!(out, "  ops/s       {:.1}", self.ops_per_sec);
        let _ = writeln!(
            out,
            "  MB/s        {:.2} ({} bytes)",
            self.mb_per_sec, self.bytes
        );
        let _ = writeln!(out, "  latency     {}", latency_line(&self.latency_ms));
        if self.per_op.len() > 1 {
            for (name, s) in &self.per_op {
                let _ = writeln!(
                    out,
                    "  {name:<8}    {} ok, {} errors, {:.1} ops/s, {}",
                    s.ok,
                    s.errors,
                    s.ops_per_sec,
                    latency_line(&s.latency_ms)
                );
            }
        }
        if !self.errors_by_status.is_empty() {
            let list: Vec<String> = self
                .errors_by_status
                .iter()
                .map(|(k, v)| format!("{k}: {v}"))
                .collect();
            let _ = writeln!(out, "  by status   {}", list.join(", "));
        }
        let _ = writeln!(
            out,
            "  client CPU  {:.1} µs/request (user {:.3} s, sys {:.3} s)",
            self.cpu.us_per_request, self.cpu.user_sec, self.cpu.sys_sec
        );
        if let Some(c) = &self.cleanup {
            let _ = writeln!(
                out,
                "  cleanup     {} objects, {} containers deleted, {} errors",
                c.objects_deleted, c.containers_deleted, c.errors
            );
        }
        out
    }
}

fn latency_line(l: &LatencySummary) -> String {
    format!(
        "p50 {:.3} ms, p90 {:.3} ms, p99 {:.3} ms, max {:.3} ms",
        l.p50, l.p90, l.p99, l.max
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, rel: f64) -> bool {
        (a - b).abs() <= b.abs() * rel
    }

    #[test]
    fn percentiles_of_uniform_samples() {
        let mut l = Latency::new();
        // 1 ms .. 1000 ms, one sample each.
        for ms in 1..=1000u64 {
            l.record(Duration::from_millis(ms));
        }
        let s = l.summary();
        assert_eq!(s.samples, 1000);
        assert!(close(s.p50, 500.0, 0.002), "p50 {}", s.p50);
        assert!(close(s.p90, 900.0, 0.002), "p90 {}", s.p90);
        assert!(close(s.p99, 990.0, 0.002), "p99 {}", s.p99);
        assert!(close(s.max, 1000.0, 0.002), "max {}", s.max);
        assert!(close(s.mean, 500.5, 0.002), "mean {}", s.mean);
    }

    #[test]
    fn percentiles_with_a_tail() {
        let mut l = Latency::new();
        for _ in 0..980 {
            l.record(Duration::from_micros(100));
        }
        for _ in 0..20 {
            l.record(Duration::from_millis(50));
        }
        let s = l.summary();
        assert!(close(s.p50, 0.1, 0.002));
        assert!(close(s.p90, 0.1, 0.002));
        // 98 % are fast: the 99th percentile lands in the slow tail.
        assert!(close(s.p99, 50.0, 0.002), "p99 {}", s.p99);
        assert!(close(s.max, 50.0, 0.002));
    }

    #[test]
    fn empty_and_extreme_latencies() {
        let mut l = Latency::new();
        assert_eq!(l.summary(), LatencySummary::default());
        l.record(Duration::ZERO);
        l.record(Duration::from_secs(10 * 3600));
        assert_eq!(l.len(), 2);
        assert_eq!(l.quantile_us(0.0), 1);
        assert!(close(l.summary().max, 3_600_000.0, 0.002));
    }

    #[test]
    fn merging_counts_and_errors() {
        let mut a = RunStats::default();
        let mut b = RunStats::default();
        a.op(Op::Put).ok = 3;
        a.op(Op::Put).bytes = 300;
        a.op(Op::Put).error("503");
        b.op(Op::Put).error("503");
        b.op(Op::Get).error("404");
        b.op(Op::Get).ok = 1;
        b.op(Op::Get).latency.record(Duration::from_millis(2));
        a.merge(&b);
        let t = a.total();
        assert_eq!(t.ok, 4);
        assert_eq!(t.bytes, 300);
        assert_eq!(t.error_count(), 3);
        assert_eq!(t.errors.get("503"), Some(&2));
        assert_eq!(t.errors.get("404"), Some(&1));
        assert_eq!(t.latency.len(), 1);

        let info = RunInfo {
            workload: "mixed".into(),
            mix: None,
            size: 100,
            concurrency: 1,
            threads: 1,
            containers: 1,
        };
        let s = Summary::new(info, &a, Duration::from_secs(2), CpuTime::default());
        assert_eq!(s.requests, 7);
        assert_eq!(s.ok, 4);
        assert_eq!(s.errors, 3);
        assert!(close(s.ops_per_sec, 2.0, 1e-9));
        assert_eq!(s.per_op.len(), 2);
        assert_eq!(s.per_op["put"].errors, 2);
        let text = s.to_text();
        assert!(text.contains("404: 1, 503: 2"), "{text}");
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["errors_by_status"]["503"], 2);
    }

    #[test]
    fn cpu_time_moves_forward() {
        let a = CpuTime::now();
        let mut x = 0u64;
        for i in 0..2_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        let b = CpuTime::now();
        let d = b.since(&a);
        assert!(d.user + d.sys >= Duration::ZERO);
        assert!(b.user >= a.user);
    }
}
