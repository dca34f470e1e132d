//! Logging setup (`DESIGN.md`, "Logging and metrics"): tracing events to stderr (journald
//! picks them up under systemd), filtered by `RUST_LOG` when set, else by the configured
//! level (default `info`). Colours only when stderr is a terminal.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// [`init_logging_with`] at the default `info` level.
pub fn init_logging(name: &str) -> bool {
    init_logging_with(name, None)
}

/// Install the process-wide subscriber. `level` is a filter directive such as `info`,
/// `debug` or `cairn_object=debug,info` (the `[server] log_level` setting); `RUST_LOG`
/// overrides it. Returns `false` (and changes nothing) when a subscriber was already
/// installed, e.g. by a test harness. An invalid filter falls back to `info` with a warning.
pub fn init_logging_with(name: &str, level: Option<&str>) -> bool {
    let filter = match std::env::var("RUST_LOG") {
        Ok(v) if !v.trim().is_empty() => EnvFilter::try_new(v),
        _ => EnvFilter::try_new(level.unwrap_or("info")),
    };
    let (filter, bad) = match filter {
        Ok(f) => (f, None),
        Err(e) => (EnvFilter::new("info"), Some(e.to_string())),
    };
    let ok = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init()
        .is_ok();
    if let Some(e) = bad {
        tracing::warn!(error = %e, "invalid log filter; using info");
    }
    if ok {
        tracing::info!(
            process = name,
            pid = std::process::id(),
            version = env!("CARGO_PKG_VERSION"),
            "starting"
        );
    }
    ok
}

#[cfg(test)]
mod tests {
    #[test]
    fn second_init_is_harmless() {
        let _ = super::init_logging("test");
        assert!(!super::init_logging_with("test", Some("debug")));
    }
}
