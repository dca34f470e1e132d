//! `cairn ring BUILDER [VERB …]`: the ring-builder command line, with
//! `swift-ring-builder`'s verbs.
//!
//! | verb | effect |
//! |---|---|
//! | `create PART_POWER REPLICAS MIN_PART_HOURS [--placement XYZ]` | new builder (refuses to overwrite one) |
//! | `add DEVSPEC WEIGHT [DEVSPEC WEIGHT …]`, `add --file FILE` | add devices (`r1z1-10.0.0.1:6200/sdb1 100`) |
//! | `remove SEARCH` | mark matching devices for removal at the next rebalance |
//! | `set-weight SEARCH WEIGHT` | change weights (≥ 0) |
//! | `set-info SEARCH CHANGE` | change addresses / name / meta (`10.0.0.2:6201/sdc_ssd`) |
//! | `set-overload X` / `set-min-part-hours H` / `set-replicas R` | builder parameters (`10%` or `0.1`) |
//! | `set-placement XYZ`, `set-placement none` | placement rule ([`crate::builder::placement`]), enforced by `rebalance` |
//! | `rebalance [--seed N]` | reassign partitions, write BUILDER and `NAME.ring` |
//! | `write-ring` | (re)write `NAME.ring` from the builder |
//! | `list [--json]`, or no verb | devices with partition counts and balance |
//! | `validate` | check the assignment (and every partition against the placement rule) |
//! | `dispersion [--verbose] [--json]` | partitions less spread than the topology allows |
//! | `pretend-min-part-hours-passed` | let the next rebalance move any partition |
//! | `export --json` | part power, replicas, devices and the assignment as JSON |
//!
//! Search values, add values and change values use Swift's syntax ([`crate::devspec`]).
//! A search matching several devices applies the change to all of them (each is listed).
//!
//! **Exit codes**: 0 success; 1 `rebalance` found nothing to change (the builder and ring
//! file are left as they were, like `swift-ring-builder`'s "cowardly refusing" exit); 2 bad
//! input of any kind (one line on stderr, files untouched).
//!
//! [`run_with`] runs a command from plain strings and returns its output: the library-level
//! tests drive the CLI through it.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::json;

use crate::builder::{BuilderError, PlacementRule, RebalanceOptions, RingBuilder};
use crate::devspec::{self, DevSpecError, SearchValue};
use crate::file::{self, FileError, RING_MAGIC};
use crate::types::{Device, RingData};

/// `cairn ring BUILDER [VERB …]`.
#[derive(Debug, clap::Args)]
pub struct RingArgs {
    /// The builder file (`NAME.builder`); the ring file is `NAME.ring` beside it.
    pub builder: PathBuf,
    /// Without a verb: list the devices as JSON.
    #[arg(long)]
    pub json: bool,
    #[command(subcommand)]
    pub verb: Option<Verb>,
}

/// What to do with the builder.
#[derive(Debug, Subcommand)]
pub enum Verb {
    /// Create a builder with 2^PART_POWER partitions.
    Create {
        #[arg(allow_hyphen_values = true)]
        part_power: String,
        /// Replica count; fractions (e.g. 2.5) are allowed.
        #[arg(allow_hyphen_values = true)]
        replicas: String,
        /// Hours before a partition may move again (0-255).
        #[arg(allow_hyphen_values = true)]
        min_part_hours: String,
        /// Placement rule `xyz`: x replicas in other regions, y in other zones of the
        /// first copy's region, z on other servers of its zone (1 + x + y + z replicas).
        #[arg(long)]
        placement: Option<String>,
    },
    /// Add devices: pairs of `r<region>z<zone>-<ip>:<port>[R<ip>:<port>]/<device>[_<meta>]`
    /// and weight, or `--file FILE` with one pair per line.
    Add {
        /// File with one `DEVSPEC WEIGHT` per line (blank lines and `#` comments skipped).
        #[arg(long, short)]
        file: Option<PathBuf>,
        #[arg(allow_hyphen_values = true)]
        values: Vec<String>,
    },
    /// Mark the matching devices for removal at the next rebalance.
    Remove { search: String },
    /// Set the weight of the matching devices.
    SetWeight {
        search: String,
        #[arg(allow_hyphen_values = true)]
        weight: String,
    },
    /// Change ip:port, replication ip:port, device name or meta of the matching devices.
    SetInfo { search: String, change: String },
    /// Set the overload factor (`10%` or `0.1`).
    SetOverload {
        #[arg(allow_hyphen_values = true)]
        overload: String,
    },
    /// Set min_part_hours (0-255).
    SetMinPartHours {
        #[arg(allow_hyphen_values = true)]
        hours: String,
    },
    /// Change the replica count (applied at the next rebalance).
    SetReplicas {
        #[arg(allow_hyphen_values = true)]
        replicas: String,
    },
    /// Set the placement rule `xyz` (x replicas in other regions, y in other zones of the
    /// first copy's region, z on other servers of its zone), or `none`.
    SetPlacement {
        #[arg(allow_hyphen_values = true)]
        rule: String,
    },
    /// Reassign partitions; writes the builder and the ring file.
    Rebalance {
        /// Seed of the random choices (default: random, recorded in the builder).
        #[arg(long)]
        seed: Option<String>,
    },
    /// Write the ring file from the builder.
    WriteRing,
    /// List the devices with partition counts and balance.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Check the assignment.
    Validate,
    /// Show partitions whose replicas are less spread than the topology allows.
    Dispersion {
        /// List every such partition.
        #[arg(long, short)]
        verbose: bool,
        #[arg(long)]
        json: bool,
    },
    /// Let the next rebalance move any partition.
    PretendMinPartHoursPassed,
    /// Print part power, replicas, devices and the assignment as JSON.
    Export {
        /// JSON is the only format (the flag is accepted for clarity).
        #[arg(long)]
        json: bool,
    },
}

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Command-line syntax (clap's message, possibly several lines).
    #[error("{0}")]
    Usage(String),
    /// Bad input: one line.
    #[error("{0}")]
    Input(String),
    /// `rebalance` had nothing to change; nothing was written.
    #[error("{0}")]
    Unchanged(String),
}

impl CliError {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Unchanged(_) => 1,
            CliError::Usage(_) | CliError::Input(_) => 2,
        }
    }
}

impl From<BuilderError> for CliError {
    fn from(e: BuilderError) -> Self {
        CliError::Input(e.to_string())
    }
}

impl From<DevSpecError> for CliError {
    fn from(e: DevSpecError) -> Self {
        CliError::Input(e.to_string())
    }
}

impl From<FileError> for CliError {
    fn from(e: FileError) -> Self {
        CliError::Input(e.to_string())
    }
}

fn input<T>(msg: impl Into<String>) -> Result<T, CliError> {
    Err(CliError::Input(msg.into()))
}

/// Entry point used by `bin/cairn.rs`.
pub fn run(args: RingArgs) -> ExitCode {
    match execute(args) {
        Ok(out) => {
            emit(&out);
            ExitCode::SUCCESS
        }
        Err(CliError::Unchanged(msg)) => {
            emit(&format!("{msg}\n"));
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("cairn ring: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

/// Write to stdout; a closed pipe (`cairn ring x.builder export --json | head`) is not an
/// error worth a panic, which `print!` would raise.
fn emit(out: &str) {
    use std::io::Write as _;
    let mut stdout = std::io::stdout().lock();
    let _ = stdout
        .write_all(out.as_bytes())
        .and_then(|()| stdout.flush());
}

#[derive(Debug, Parser)]
#[command(name = "cairn ring", no_binary_name = true)]
struct Standalone {
    #[command(flatten)]
    args: RingArgs,
}

/// Run `cairn ring ARGS…` (without the `cairn ring` words) and return what it prints.
pub fn run_with<I, S>(args: I) -> Result<String, CliError>
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    let args: Vec<String> = args.into_iter().map(Into::into).collect();
    let parsed = Standalone::try_parse_from(args).map_err(|e| CliError::Usage(e.to_string()))?;
    execute(parsed.args)
}

/// Run a parsed command and return its output.
pub fn execute(args: RingArgs) -> Result<String, CliError> {
    let path = args.builder.as_path();
    let Some(verb) = args.verb else {
        return list(path, args.json);
    };
    match verb {
        Verb::Create {
            part_power,
            replicas,
            min_part_hours,
            placement,
        } => create(
            path,
            &part_power,
            &replicas,
            &min_part_hours,
            placement.as_deref(),
        ),
        Verb::Add { file, values } => add(path, file.as_deref(), &values),
        Verb::Remove { search } => remove(path, &search),
        Verb::SetWeight { search, weight } => set_weight(path, &search, &weight),
        Verb::SetInfo { search, change } => set_info(path, &search, &change),
        Verb::SetOverload { overload } => set_overload(path, &overload),
        Verb::SetMinPartHours { hours } => set_min_part_hours(path, &hours),
        Verb::SetReplicas { replicas } => set_replicas(path, &replicas),
        Verb::SetPlacement { rule } => set_placement(path, &rule),
        Verb::Rebalance { seed } => rebalance(path, seed.as_deref()),
        Verb::WriteRing => write_ring(path),
        Verb::List { json } => list(path, json || args.json),
        Verb::Validate => validate(path),
        Verb::Dispersion { verbose, json } => dispersion(path, verbose, json),
        Verb::PretendMinPartHoursPassed => pretend(path),
        Verb::Export { .. } => export(path),
    }
}

// ----- parsing helpers -------------------------------------------------------------------

fn parse_num<T: std::str::FromStr>(what: &str, s: &str) -> Result<T, CliError> {
    match s.trim().parse() {
        Ok(v) => Ok(v),
        Err(_) => input(format!("invalid {what} {s:?}")),
    }
}

fn parse_weight(s: &str) -> Result<f64, CliError> {
    let w: f64 = parse_num("weight", s)?;
    if !w.is_finite() || w < 0.0 {
        return input(format!("invalid weight {s:?}: it must be a number ≥ 0"));
    }
    Ok(w)
}

fn parse_min_part_hours(s: &str) -> Result<u8, CliError> {
    match s.trim().parse::<u8>() {
        Ok(h) => Ok(h),
        Err(_) => input(format!("invalid min_part_hours {s:?}: expected 0 to 255")),
    }
}

/// `10%` → 0.1, `0.1` → 0.1.
fn parse_overload(s: &str) -> Result<f64, CliError> {
    let t = s.trim();
    let v = match t.strip_suffix('%') {
        Some(pct) => parse_num::<f64>("overload", pct)? / 100.0,
        None => parse_num::<f64>("overload", t)?,
    };
    if !v.is_finite() || v < 0.0 {
        return input(format!("invalid overload {s:?}: it must be ≥ 0"));
    }
    Ok(v)
}

/// `110` → a rule, `none` → no rule.
fn parse_placement(s: &str) -> Result<Option<PlacementRule>, CliError> {
    if s.trim().eq_ignore_ascii_case("none") {
        return Ok(None);
    }
    s.parse::<PlacementRule>()
        .map(Some)
        .map_err(CliError::Input)
}

fn placement_text(rule: Option<PlacementRule>) -> String {
    match rule {
        Some(rule) => format!(
            "{rule} ({} replicas: {} in other regions, {} in other zones, {} on other servers)",
            rule.replicas(),
            rule.regions,
            rule.zones,
            rule.servers
        ),
        None => "none (spread as widely as possible)".into(),
    }
}

fn load(path: &Path) -> Result<RingBuilder, CliError> {
    if !path.exists() {
        return input(format!(
            "{}: no such builder file (create one with `cairn ring {} create PART_POWER \
             REPLICAS MIN_PART_HOURS`)",
            path.display(),
            path.display()
        ));
    }
    Ok(RingBuilder::load(path)?)
}

fn save(builder: &RingBuilder, path: &Path) -> Result<(), CliError> {
    builder.save(path)?;
    Ok(())
}

/// Devices matching a search value, excluding those already marked for removal.
fn matching(builder: &RingBuilder, search: &str) -> Result<Vec<u32>, CliError> {
    let sv: SearchValue = devspec::parse_search_value(search)?;
    let ids: Vec<u32> = builder
        .devices()
        .filter(|d| sv.matches(d) && !builder.is_pending_removal(d.id))
        .map(|d| d.id)
        .collect();
    if ids.is_empty() {
        return input(format!("search value {search:?} matched no devices"));
    }
    Ok(ids)
}

fn describe(dev: &Device) -> String {
    let mut s = format!(
        "d{}r{}z{}-{}:{}",
        dev.id,
        dev.region,
        dev.zone,
        bracket(&dev.ip),
        dev.port
    );
    if dev.replication_ip != dev.ip || dev.replication_port != dev.port {
        let _ = write!(
            s,
            "R{}:{}",
            bracket(&dev.replication_ip),
            dev.replication_port
        );
    }
    let _ = write!(s, "/{}", dev.device);
    if !dev.meta.is_empty() {
        let _ = write!(s, "_{:?}", dev.meta);
    }
    s
}

/// IPv6 literals are shown in brackets, as they are written in add values.
fn bracket(ip: &str) -> String {
    if ip.contains(':') {
        format!("[{ip}]")
    } else {
        ip.to_string()
    }
}

fn device_for(builder: &RingBuilder, id: u32) -> Result<&Device, CliError> {
    builder
        .device(id)
        .ok_or_else(|| CliError::Input(format!("no device with id {id}")))
}

// ----- verbs -------------------------------------------------------------------------------

fn create(
    path: &Path,
    part_power: &str,
    replicas: &str,
    hours: &str,
    placement: Option<&str>,
) -> Result<String, CliError> {
    let part_power: i64 = parse_num("part power", part_power)?;
    let replicas: f64 = parse_num("replica count", replicas)?;
    let hours = parse_min_part_hours(hours)?;
    let mut builder = RingBuilder::new(part_power, replicas, hours)?;
    if let Some(rule) = placement.map(parse_placement).transpose()?.flatten() {
        if !rule.fits_replicas(replicas) {
            return input(format!(
                "placement rule {rule} needs exactly {} replicas, not {replicas}",
                rule.replicas()
            ));
        }
        builder.set_placement(Some(rule));
    }
    if path.exists() {
        return input(format!(
            "{}: already exists (remove it first to start over)",
            path.display()
        ));
    }
    save(&builder, path)?;
    Ok(format!(
        "Created {}: {} partitions, {} replicas, min_part_hours {}, placement {}\n",
        path.display(),
        builder.parts(),
        builder.replicas(),
        builder.min_part_hours(),
        placement_text(builder.placement())
    ))
}

/// `(devspec, weight)` pairs from the command line or a file.
fn add_pairs(file: Option<&Path>, values: &[String]) -> Result<Vec<(String, String)>, CliError> {
    let mut pairs = Vec::new();
    if let Some(file) = file {
        if !values.is_empty() {
            return input("add: give either --file or DEVSPEC WEIGHT pairs, not both");
        }
        let text = std::fs::read_to_string(file)
            .map_err(|e| CliError::Input(format!("{}: {e}", file.display())))?;
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let fields: Vec<&str> = line.split_whitespace().collect();
            let [spec, weight] = fields[..] else {
                return input(format!(
                    "{} line {}: expected `DEVSPEC WEIGHT`, got {line:?}",
                    file.display(),
                    n + 1
                ));
            };
            pairs.push((spec.to_string(), weight.to_string()));
        }
    } else {
        if values.is_empty() || values.len() % 2 == 1 {
            return input("add: expected DEVSPEC WEIGHT pairs (e.g. r1z1-10.0.0.1:6200/sdb1 100)");
        }
        for pair in values.chunks(2) {
            pairs.push((pair[0].clone(), pair[1].clone()));
        }
    }
    if pairs.is_empty() {
        return input("add: no devices given");
    }
    Ok(pairs)
}

fn add(path: &Path, file: Option<&Path>, values: &[String]) -> Result<String, CliError> {
    let mut builder = load(path)?;
    let pairs = add_pairs(file, values)?;
    let mut out = String::new();
    for (spec, weight) in pairs {
        let spec = devspec::parse_add_value(&spec)?;
        let weight = parse_weight(&weight)?;
        let id = builder.add_device(spec.to_device(0, weight))?;
        let dev = device_for(&builder, id)?;
        let _ = writeln!(
            out,
            "Device {} with {:.2} weight got id {id}",
            describe(dev),
            weight
        );
    }
    save(&builder, path)?;
    Ok(out)
}

fn remove(path: &Path, search: &str) -> Result<String, CliError> {
    let mut builder = load(path)?;
    let mut out = String::new();
    for id in matching(&builder, search)? {
        builder.remove_device(id)?;
        let _ = writeln!(
            out,
            "Device {} marked for removal; its partitions move at the next rebalance",
            describe(device_for(&builder, id)?)
        );
    }
    save(&builder, path)?;
    Ok(out)
}

fn set_weight(path: &Path, search: &str, weight: &str) -> Result<String, CliError> {
    let mut builder = load(path)?;
    let weight = parse_weight(weight)?;
    let mut out = String::new();
    for id in matching(&builder, search)? {
        let old = device_for(&builder, id)?.weight;
        builder.set_weight(id, weight)?;
        let _ = writeln!(
            out,
            "Device {} weight changed from {old:.2} to {weight:.2}",
            describe(device_for(&builder, id)?)
        );
    }
    save(&builder, path)?;
    Ok(out)
}

fn set_info(path: &Path, search: &str, change: &str) -> Result<String, CliError> {
    let mut builder = load(path)?;
    let change = devspec::parse_change_value(change)?;
    let mut out = String::new();
    for id in matching(&builder, search)? {
        let before = describe(device_for(&builder, id)?);
        builder.set_info(id, &change)?;
        let _ = writeln!(
            out,
            "Device {before} is now {}",
            describe(device_for(&builder, id)?)
        );
    }
    save(&builder, path)?;
    Ok(out)
}

fn set_overload(path: &Path, value: &str) -> Result<String, CliError> {
    let mut builder = load(path)?;
    let overload = parse_overload(value)?;
    builder.set_overload(overload)?;
    save(&builder, path)?;
    Ok(format!(
        "The overload factor is now {:.2}% ({overload:.6})\n",
        overload * 100.0
    ))
}

fn set_min_part_hours(path: &Path, value: &str) -> Result<String, CliError> {
    let mut builder = load(path)?;
    let hours = parse_min_part_hours(value)?;
    builder.set_min_part_hours(hours);
    save(&builder, path)?;
    Ok(format!(
        "The minimum number of hours before a partition can be reassigned is now {hours}\n"
    ))
}

fn set_replicas(path: &Path, value: &str) -> Result<String, CliError> {
    let mut builder = load(path)?;
    let replicas: f64 = parse_num("replica count", value)?;
    builder.set_replicas(replicas)?;
    save(&builder, path)?;
    Ok(format!(
        "The replica count is now {replicas:.6}; rebalance to apply it\n"
    ))
}

fn set_placement(path: &Path, value: &str) -> Result<String, CliError> {
    let mut builder = load(path)?;
    let rule = parse_placement(value)?;
    builder.set_placement(rule);
    save(&builder, path)?;
    let mut out = format!(
        "The placement rule is now {}; rebalance to apply it\n",
        placement_text(rule)
    );
    if let Some(problem) = builder.placement_problem() {
        let _ = writeln!(out, "WARNING: rebalance will refuse until fixed: {problem}");
    }
    Ok(out)
}

/// A progress bar that only appears once the rebalance has taken over a second (and only
/// on a terminal: indicatif hides it otherwise).
struct LazyBar {
    started: Instant,
    bar: ProgressBar,
    shown: bool,
}

impl LazyBar {
    fn new() -> Self {
        let bar = ProgressBar::with_draw_target(Some(1), ProgressDrawTarget::hidden());
        if let Ok(style) = ProgressStyle::with_template("{msg:>10} [{bar:40}] {pos}/{len}") {
            bar.set_style(style.progress_chars("=> "));
        }
        LazyBar {
            started: Instant::now(),
            bar,
            shown: false,
        }
    }

    fn update(&mut self, stage: &str, done: u64, total: u64) {
        if !self.shown && self.started.elapsed() > Duration::from_secs(1) {
            self.bar.set_draw_target(ProgressDrawTarget::stderr());
            self.shown = true;
        }
        self.bar.set_length(total.max(1));
        self.bar.set_position(done);
        if self.bar.message() != stage {
            self.bar.set_message(stage.to_string());
        }
    }
}

fn rebalance(path: &Path, seed: Option<&str>) -> Result<String, CliError> {
    let mut builder = load(path)?;
    let seed = match seed {
        Some(s) => Some(parse_num::<u64>("seed", s)?),
        None => None,
    };
    let ring_path = RingBuilder::ring_path_for(path);
    let had_changes = builder.devs_changed() || !builder.pending_removal().is_empty();
    let opts = RebalanceOptions { seed, now: None };
    let mut bar = LazyBar::new();
    let report = builder.rebalance_with_progress(&opts, &mut |stage, done, total| {
        bar.update(stage, done, total)
    });
    bar.bar.finish_and_clear();
    let report = report?;
    if report.changed_part_replicas == 0 && !had_changes && ring_path.exists() {
        return Err(CliError::Unchanged(
            "No partitions could be reassigned (nothing to do, or min_part_hours has not \
             passed); builder and ring file left unchanged."
                .into(),
        ));
    }
    save(&builder, path)?;
    builder.write_ring(&ring_path)?;
    let total = builder
        .replica2part2dev()
        .iter()
        .map(Vec::len)
        .sum::<usize>();
    let mut out = String::new();
    for dev in &report.removed_devices {
        let _ = writeln!(out, "Removed device {}", describe(dev));
    }
    let _ = writeln!(
        out,
        "Reassigned {} part-replicas ({:.2}%) in {} partitions. Balance is now {:.2}. \
         Dispersion is now {:.2}",
        report.changed_part_replicas,
        100.0 * report.changed_part_replicas as f64 / total.max(1) as f64,
        report.changed_partitions,
        report.balance,
        report.dispersion
    );
    if report.balance > 5.0 && builder.min_part_hours() > 0 {
        let _ = writeln!(
            out,
            "NOTE: balance {:.2} may improve after min_part_hours ({}) pass: push this ring, \
             wait, then rebalance again.",
            report.balance,
            builder.min_part_hours()
        );
    }
    if let Some(rule) = builder.placement() {
        let bad = builder.placement_violations().len();
        if bad > 0 {
            let _ = writeln!(
                out,
                "NOTE: {bad} partitions still violate placement rule {rule} (at most one \
                 replica of a partition moves per min_part_hours): push this ring, wait, then \
                 rebalance again."
            );
        }
    }
    let _ = writeln!(
        out,
        "Seed {}; wrote {} and {} (version {})",
        report.seed,
        path.display(),
        ring_path.display(),
        builder.version()
    );
    Ok(out)
}

fn write_ring(path: &Path) -> Result<String, CliError> {
    let builder = load(path)?;
    let ring_path = RingBuilder::ring_path_for(path);
    builder.write_ring(&ring_path)?;
    Ok(format!(
        "Wrote {} (version {})\n",
        ring_path.display(),
        builder.version()
    ))
}

fn ring_status(builder: &RingBuilder, ring_path: &Path) -> &'static str {
    if !ring_path.exists() {
        return "not found";
    }
    match file::read_file::<RingData>(RING_MAGIC, ring_path) {
        Ok(ring) if ring == builder.to_ring_data() => "up-to-date",
        Ok(_) => "obsolete",
        Err(_) => "unreadable",
    }
}

fn distinct<T: Ord>(mut v: Vec<T>) -> usize {
    v.sort();
    v.dedup();
    v.len()
}

fn list(path: &Path, as_json: bool) -> Result<String, CliError> {
    let builder = load(path)?;
    let held = builder.device_parts();
    let ring_path = RingBuilder::ring_path_for(path);
    let status = ring_status(&builder, &ring_path);
    let parts_of = |d: &Device| held.get(d.id as usize).copied().unwrap_or(0);
    if as_json {
        let devices: Vec<_> = builder
            .devices()
            .map(|d| {
                json!({
                    "id": d.id, "region": d.region, "zone": d.zone, "ip": d.ip, "port": d.port,
                    "replication_ip": d.replication_ip, "replication_port": d.replication_port,
                    "device": d.device, "weight": d.weight, "meta": d.meta,
                    "parts": parts_of(d), "balance": builder.device_balance(d, parts_of(d)),
                    "removing": builder.is_pending_removal(d.id),
                })
            })
            .collect();
        let value = json!({
            "builder": path.display().to_string(),
            "version": builder.version(),
            "part_power": builder.part_power(),
            "partitions": builder.parts(),
            "replicas": builder.replicas(),
            "min_part_hours": builder.min_part_hours(),
            "overload": builder.overload(),
            "placement": builder.placement().map(|r| r.to_string()),
            "balance": builder.balance(),
            "dispersion": builder.dispersion(),
            "ring_file": status,
            "devices": devices,
        });
        return Ok(format!("{value:#}\n"));
    }
    let devs: Vec<&Device> = builder.devices().collect();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{}, build version {}",
        path.display(),
        builder.version()
    );
    let _ = writeln!(
        out,
        "{} partitions, {:.6} replicas, {} regions, {} zones, {} devices, {:.2} balance, \
         {:.2} dispersion",
        builder.parts(),
        builder.replicas(),
        distinct(devs.iter().map(|d| d.region).collect()),
        distinct(devs.iter().map(|d| (d.region, d.zone)).collect()),
        devs.len(),
        builder.balance(),
        builder.dispersion()
    );
    let _ = writeln!(
        out,
        "The minimum number of hours before a partition can be reassigned is {}",
        builder.min_part_hours()
    );
    let _ = writeln!(
        out,
        "The overload factor is {:.2}% ({:.6})",
        builder.overload() * 100.0,
        builder.overload()
    );
    let _ = writeln!(
        out,
        "The placement rule is {}",
        placement_text(builder.placement())
    );
    let _ = writeln!(out, "Ring file {} is {status}", ring_path.display());
    let _ = writeln!(
        out,
        "Devices: {:>5} {:>6} {:>4} {:>22} {:>22} {:>10} {:>8} {:>10} {:>8} {:>5} meta",
        "id",
        "region",
        "zone",
        "ip address:port",
        "replication ip:port",
        "name",
        "weight",
        "partitions",
        "balance",
        "flags"
    );
    for d in devs {
        let flags = if builder.is_pending_removal(d.id) {
            "DEL"
        } else {
            ""
        };
        let _ = writeln!(
            out,
            "         {:>5} {:>6} {:>4} {:>22} {:>22} {:>10} {:>8.2} {:>10} {:>8.2} {:>5} {}",
            d.id,
            d.region,
            d.zone,
            format!("{}:{}", bracket(&d.ip), d.port),
            format!("{}:{}", bracket(&d.replication_ip), d.replication_port),
            d.device,
            d.weight,
            parts_of(d),
            builder.device_balance(d, parts_of(d)),
            flags,
            d.meta
        );
    }
    Ok(out)
}

fn validate(path: &Path) -> Result<String, CliError> {
    let builder = load(path)?;
    builder.validate()?;
    Ok("Ring is valid.\n".into())
}

fn dispersion(path: &Path, verbose: bool, as_json: bool) -> Result<String, CliError> {
    let builder = load(path)?;
    let mut report = builder.dispersion_report();
    if as_json {
        if !verbose {
            report.parts.clear();
        }
        let value = serde_json::to_value(&report)
            .map_err(|e| CliError::Input(format!("cannot encode the report: {e}")))?;
        return Ok(format!("{value:#}\n"));
    }
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Dispersion is {:.2}, Balance is {:.2}, Overload is {:.2}%",
        report.dispersion,
        builder.balance(),
        builder.overload() * 100.0
    );
    let _ = writeln!(
        out,
        "{:<8} {:>12} {:>14}",
        "Tier", "Partitions", "Part-replicas"
    );
    for tier in &report.tiers {
        let _ = writeln!(
            out,
            "{:<8} {:>12} {:>14}",
            tier.tier, tier.parts, tier.replicas
        );
    }
    let _ = writeln!(
        out,
        "{} partitions have replicas less spread than the topology allows",
        report.parts.len()
    );
    if let Some(rule) = builder.placement() {
        // The figures above ignore the rule, which may ask for less spread on purpose.
        let _ = writeln!(
            out,
            "Placement rule {rule}: {} partitions violate it",
            builder.placement_violations().len()
        );
    }
    if verbose {
        for part in &report.parts {
            let over: Vec<String> = part
                .over
                .iter()
                .map(|(label, have, max)| format!("{label} holds {have} (max {max})"))
                .collect();
            let _ = writeln!(
                out,
                "partition {}: devices {:?}: {}",
                part.part,
                part.devices,
                over.join(", ")
            );
        }
    }
    Ok(out)
}

fn pretend(path: &Path) -> Result<String, CliError> {
    let mut builder = load(path)?;
    builder.pretend_min_part_hours_passed();
    save(&builder, path)?;
    Ok("Every partition may now move at the next rebalance.\n".into())
}

fn export(path: &Path) -> Result<String, CliError> {
    let builder = load(path)?;
    let devices: Vec<_> = builder
        .devices()
        .map(|d| {
            json!({
                "id": d.id, "region": d.region, "zone": d.zone, "ip": d.ip,
                "port": d.port, "device": d.device, "weight": d.weight,
            })
        })
        .collect();
    let assignment: Vec<Vec<u16>> = (0..builder.parts())
        .map(|p| builder.part_devs(p).collect())
        .collect();
    let value = json!({
        "part_power": builder.part_power(),
        "replicas": builder.replicas(),
        "devices": devices,
        "assignment": if builder.replica2part2dev().is_empty() { json!([]) } else { json!(assignment) },
    });
    Ok(format!("{value}\n"))
}
