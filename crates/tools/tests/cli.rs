//! The clap definitions of `cairn dispersion` and `cairn recon` as the binary wires them:
//! consistent (no clashing flags) and parsing the documented command lines.

use std::path::PathBuf;

use cairn_tools::{DispersionArgs, DispersionCommand, ReconArgs};
use clap::{CommandFactory, Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cairn")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    Dispersion(DispersionArgs),
    Recon(ReconArgs),
}

#[test]
fn definitions_are_consistent() {
    Cli::command().debug_assert();
}

#[test]
fn dispersion_command_lines() {
    let cli = Cli::try_parse_from([
        "cairn",
        "dispersion",
        "populate",
        "--auth",
        "http://127.0.0.1:8080/auth/v1.0",
        "-U",
        "test:tester",
        "-K",
        "testing",
        "--cluster-config",
        "/tmp/cairn.toml",
        "--coverage",
        "2.5",
        "--json",
    ])
    .unwrap();
    let Cmd::Dispersion(DispersionArgs {
        command: DispersionCommand::Populate(p),
    }) = cli.command
    else {
        panic!("not populate");
    };
    assert_eq!(p.coverage, 2.5);
    assert_eq!(p.common.user, "test:tester");
    assert_eq!(p.common.cluster_config, PathBuf::from("/tmp/cairn.toml"));
    assert!(p.common.json);

    let cli = Cli::try_parse_from([
        "cairn",
        "dispersion",
        "report",
        "-A",
        "http://proxy:8080/auth/v1.0",
        "--threshold",
        "99.5",
        "-p",
        "--object-only",
    ])
    .unwrap();
    let Cmd::Dispersion(DispersionArgs {
        command: DispersionCommand::Report(r),
    }) = cli.command
    else {
        panic!("not report");
    };
    assert_eq!(r.threshold, 99.5);
    assert!(r.partitions && r.common.object_only && !r.common.container_only);
    assert_eq!(r.common.key, "testing");
    assert_eq!(r.common.retries, 5);

    assert!(Cli::try_parse_from([
        "cairn",
        "dispersion",
        "report",
        "--object-only",
        "--container-only"
    ])
    .is_err());
}

#[test]
fn recon_command_line() {
    let cli = Cli::try_parse_from([
        "cairn",
        "recon",
        "--cluster-config",
        "/etc/cairn/cairn.toml",
        "--json",
        "--timeout",
        "2",
        "--stale",
        "3600",
    ])
    .unwrap();
    let Cmd::Recon(r) = cli.command else {
        panic!("not recon");
    };
    assert!(r.json);
    assert_eq!((r.timeout, r.stale, r.max_skew), (2.0, 3600.0, 1.0));
    let defaults = Cli::try_parse_from(["cairn", "recon"]).unwrap();
    let Cmd::Recon(d) = defaults.command else {
        panic!("not recon");
    };
    assert_eq!(d, ReconArgs::new(PathBuf::from("/etc/cairn/cairn.toml")));
}
