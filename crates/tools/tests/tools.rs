//! `cairn get-nodes` and `cairn info` against temporary rings, a cluster file, object files
//! with real metadata and real container/account databases.

use cairn_common::constraints::Constraints;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use cairn_common::{HashPathSecret, Timestamp};
use cairn_db::{AccountBroker, ContainerBroker, ContainerRecord, ObjectRecord};
use cairn_object::metadata::{write_metadata, Metadata};
use cairn_ring::file::{write_file, RING_MAGIC};
use cairn_ring::{Device, Ring, RingData};
use cairn_tools::{get_nodes, get_nodes_report, info, info_report, GetNodesArgs, InfoArgs};
use tempfile::TempDir;

fn secret() -> HashPathSecret {
    HashPathSecret::new("", "changeme")
}

/// Four devices on 127.0.0.1..4 port 6200..6203; partition `p` on devices p, p+1, p+2
/// (mod 4), so device p+3 is its only handoff.
fn ring_data() -> RingData {
    let devs = (0..4u32)
        .map(|i| {
            Some(Device {
                id: i,
                region: 1,
                zone: i + 1,
                ip: format!("127.0.0.{}", i + 1),
                port: 6200 + i as u16,
                replication_ip: format!("127.0.0.{}", i + 1),
                replication_port: 6200 + i as u16,
                device: format!("sd{}", (b'a' + i as u8) as char),
                weight: 1.0,
                meta: String::new(),
            })
        })
        .collect();
    RingData {
        part_power: 2,
        replica2part2dev: (0..3u16)
            .map(|r| (0..4u16).map(|p| (p + r) % 4).collect())
            .collect(),
        devs,
        version: 1,
    }
}

struct Env {
    dir: TempDir,
}

impl Env {
    fn new() -> Env {
        let dir = tempfile::tempdir().unwrap();
        fs::write(
            dir.path().join("cairn.toml"),
            "[cluster]\nhash_path_suffix = \"changeme\"\nring_dir = \"rings\"\n\n\
             [[policy]]\nindex = 0\nname = \"gold\"\n\n[[policy]]\nindex = 1\nname = \"silver\"\n",
        )
        .unwrap();
        let rings = dir.path().join("rings");
        fs::create_dir(&rings).unwrap();
        for name in [
            "object.ring",
            "object-1.ring",
            "container.ring",
            "account.ring",
        ] {
            write_file(RING_MAGIC, &rings.join(name), &ring_data(), true).unwrap();
        }
        Env { dir }
    }

    fn cluster(&self) -> PathBuf {
        self.dir.path().join("cairn.toml")
    }

    fn ring(&self, name: &str) -> PathBuf {
        self.dir.path().join("rings").join(name)
    }

    fn devices(&self) -> PathBuf {
        self.dir.path().join("node")
    }

    fn args(&self, ring: &str, names: &[&str]) -> GetNodesArgs {
        GetNodesArgs {
            ring_file: self.ring(ring),
            account: names[0].to_string(),
            container: names.get(1).map(|s| s.to_string()),
            object: names.get(2).map(|s| s.to_string()),
            cluster_config: self.cluster(),
            handoffs: None,
            policy_index: None,
            devices: PathBuf::from("/srv/node"),
            json: false,
        }
    }

    fn info_args(&self, path: &Path) -> InfoArgs {
        InfoArgs {
            path: path.to_path_buf(),
            cluster_config: self.cluster(),
            devices: PathBuf::from("/srv/node"),
            no_etag_check: false,
        }
    }

    /// Write an object file with metadata under `objects[-policy]/part/suffix/hash/`.
    fn object_file(
        &self,
        policy: u32,
        part: u32,
        ext: &str,
        body: &[u8],
        extra: &[(&str, &str)],
    ) -> PathBuf {
        let hash = secret().hash_path("AUTH_test", Some("c"), Some("dir/o"));
        let datadir = if policy == 0 {
            "objects".to_string()
        } else {
            format!("objects-{policy}")
        };
        let dir = self
            .devices()
            .join("sdb")
            .join(datadir)
            .join(part.to_string())
            .join(&hash[29..])
            .join(&hash);
        fs::create_dir_all(&dir).unwrap();
        let ts = Timestamp::from_secs(1_700_000_000);
        let path = dir.join(format!("{}{ext}", ts.internal()));
        fs::write(&path, body).unwrap();
        let mut md = Metadata::new();
        md.set("name", "/AUTH_test/c/dir/o");
        md.set("X-Timestamp", ts.internal());
        if ext == ".data" {
            md.set("Content-Length", body.len().to_string());
            md.set("Content-Type", "text/plain");
            md.set("ETag", "5d41402abc4b2a76b9719d911017c592"); // md5("hello")
        }
        for (k, v) in extra {
            md.set(*k, *v);
        }
        write_metadata(&File::open(&path).unwrap(), &md).unwrap();
        path
    }
}

fn object_part() -> u32 {
    Ring::from_data(ring_data())
        .unwrap()
        .get_part(&secret(), "AUTH_test", Some("c"), Some("dir/o"))
}

#[test]
fn get_nodes_for_an_object() {
    let env = Env::new();
    let out = get_nodes_report(&env.args("object.ring", &["AUTH_test", "c", "dir/o"])).unwrap();
    let ring = Ring::from_data(ring_data()).unwrap();
    let (part, nodes) = ring.get_nodes(&secret(), "AUTH_test", Some("c"), Some("dir/o"));
    let hash = secret().hash_path("AUTH_test", Some("c"), Some("dir/o"));
    assert!(out.contains(&format!("Partition\t{part}\n")), "{out}");
    assert!(out.contains(&format!("Hash     \t{hash}\n")), "{out}");
    assert!(out.contains("Policy   \t0\n"));
    for n in &nodes {
        let curl = format!(
            "curl -g -I -XHEAD \"http://{}:{}/{}/{part}/AUTH_test/c/dir/o\" \
             -H \"X-Backend-Storage-Policy-Index: 0\"\n",
            n.ip, n.port, n.device
        );
        assert!(out.contains(&curl), "{curl} in {out}");
        let ssh = format!(
            "ssh {} \"ls -lah /srv/node/{}/objects/{part}/{}/{hash}\"\n",
            n.ip,
            n.device,
            &hash[29..]
        );
        assert!(out.contains(&ssh), "{ssh} in {out}");
    }
    // One handoff exists (4 devices, 3 replicas), listed and tagged.
    let handoff = ring.get_more_nodes(part).next().unwrap();
    assert!(out.contains(&format!(
        "{}:{} {}\t(id {}, region 1, zone {})\t [Handoff 0]",
        handoff.ip, handoff.port, handoff.device, handoff.id, handoff.zone
    )));
    assert_eq!(out.matches("# [Handoff]").count(), 2, "{out}");
    assert_eq!(out.matches("[Primary ").count(), 3);
}

#[test]
fn get_nodes_json_policy_from_the_ring_name_and_path_argument() {
    let env = Env::new();
    let mut args = env.args("object-1.ring", &["/AUTH_test/c/dir/o"]);
    args.json = true;
    args.devices = PathBuf::from("/mnt");
    let v: serde_json::Value = serde_json::from_str(&get_nodes_report(&args).unwrap()).unwrap();
    assert_eq!(v["policy_index"], 1);
    assert_eq!(v["account"], "AUTH_test");
    assert_eq!(v["container"], "c");
    assert_eq!(v["object"], "dir/o");
    assert_eq!(v["partition"], object_part());
    assert_eq!(v["primaries"].as_array().unwrap().len(), 3);
    assert_eq!(v["handoffs"].as_array().unwrap().len(), 1);
    assert_eq!(v["handoffs"][0]["handoff_index"], 0);
    assert_eq!(v["primaries"][2]["index"], 2);
    let path = v["primaries"][0]["path"].as_str().unwrap();
    assert!(path.starts_with("/mnt/"), "{path}");
    assert!(path.contains("/objects-1/"), "{path}");
    assert!(v["primaries"][0]["curl"]
        .as_str()
        .unwrap()
        .ends_with("-H \"X-Backend-Storage-Policy-Index: 1\""));

    // --handoffs 0 lists none; a container of the container ring has no policy header.
    let mut args = env.args("container.ring", &["AUTH_test", "c"]);
    args.handoffs = Some(0);
    let out = get_nodes_report(&args).unwrap();
    assert!(!out.contains("Handoff"), "{out}");
    assert!(!out.contains("Policy"), "{out}");
    let hash = secret().hash_path("AUTH_test", Some("c"), None);
    assert!(out.contains("/containers/"));
    assert!(out.contains(&format!("/{hash}/{hash}.db\"")), "{out}");
    assert!(!out.contains("X-Backend-Storage-Policy-Index"));
    let out = get_nodes_report(&env.args("account.ring", &["AUTH_test"])).unwrap();
    assert!(out.contains("/accounts/"), "{out}");
}

#[test]
fn get_nodes_refuses_bad_input() {
    let env = Env::new();
    // Ring kind and names disagree.
    let e = get_nodes_report(&env.args("object.ring", &["AUTH_test", "c"])).unwrap_err();
    assert!(e.0.contains("object ring"), "{e}");
    assert!(get_nodes_report(&env.args("account.ring", &["AUTH_test", "c", "o"])).is_err());
    // Missing ring, missing cluster file, unknown policy.
    assert!(get_nodes_report(&env.args("object-7.ring", &["a", "c", "o"])).is_err());
    let mut args = env.args("object.ring", &["a", "c", "o"]);
    args.cluster_config = env.dir.path().join("nope.toml");
    assert!(get_nodes_report(&args).is_err());
    let mut args = env.args("object.ring", &["a", "c", "o"]);
    args.policy_index = Some(9);
    assert!(get_nodes_report(&args).unwrap_err().0.contains("policy 9"));
    // An empty name.
    assert!(get_nodes_report(&env.args("container.ring", &["a", ""])).is_err());
    // Exit status 2 (one line on stderr).
    let code = get_nodes(env.args("object.ring", &["AUTH_test", "c"]));
    assert_eq!(format!("{code:?}"), format!("{:?}", ExitCode::from(2)));
    let code = get_nodes(env.args("object.ring", &["AUTH_test", "c", "o"]));
    assert_eq!(format!("{code:?}"), format!("{:?}", ExitCode::SUCCESS));
}

#[test]
fn info_of_an_object_data_file() {
    let env = Env::new();
    let part = object_part();
    let path = env.object_file(
        0,
        part,
        ".data",
        b"hello",
        &[
            ("X-Object-Meta-Color", "blue"),
            ("X-Object-Sysmeta-Slo", "yes"),
            ("X-Delete-At", "1700000100"),
        ],
    );
    let out = info_report(&env.info_args(&path)).unwrap();
    let hash = secret().hash_path("AUTH_test", Some("c"), Some("dir/o"));
    assert!(out.contains("Path: /AUTH_test/c/dir/o\n"), "{out}");
    assert!(out.contains("  Object: dir/o\n"));
    assert!(
        out.contains(&format!("Object hash: {hash} (matches the directory)")),
        "{out}"
    );
    assert!(out.contains("Kind: object data (.data)"));
    assert!(out.contains("Timestamp: 1700000000.00000 (2023-11-14T22:13:20.000000)"));
    assert!(
        out.contains("User Metadata:\n  X-Object-Meta-Color: blue\n"),
        "{out}"
    );
    assert!(out.contains("System Metadata:\n  X-Object-Sysmeta-Slo: yes\n"));
    assert!(out.contains("X-Delete-At: 1700000100 (2023-11-14T22:15:00.000000, expired)"));
    assert!(
        out.contains("ETag: 5d41402abc4b2a76b9719d911017c592 (valid)"),
        "{out}"
    );
    assert!(out.contains("Content-Length: 5 (valid)"));
    assert!(out.contains(&format!("Partition: {part} (matches the directory)")));
    assert_eq!(out.matches(": primary (replica ").count(), 3, "{out}");
    assert_eq!(out.matches(": handoff 0").count(), 1);
    // The file lives on device "sdb": the ring device of that name is marked.
    assert_eq!(out.matches("<- same device name").count(), 1);
    assert!(out.contains("curl -g -I -XHEAD"));

    // A damaged body (same length, xattr kept) is reported, not fixed.
    fs::write(&path, b"jello").unwrap();
    let out = info_report(&env.info_args(&path)).unwrap();
    assert!(out.contains("(INVALID: the body's MD5 is"), "{out}");
    let mut args = env.info_args(&path);
    args.no_etag_check = true;
    assert!(info_report(&args).unwrap().contains("(not checked)"));
}

#[test]
fn info_of_a_misplaced_tombstone_of_policy_1() {
    let env = Env::new();
    let wrong = (object_part() + 1) % 4;
    let path = env.object_file(1, wrong, ".ts", b"", &[]);
    let out = info_report(&env.info_args(&path)).unwrap();
    assert!(out.contains("Kind: tombstone (.ts)"), "{out}");
    assert!(out.contains("Storage policy: 1 (from the directory objects-1)"));
    assert!(out.contains("object-1.ring"));
    assert!(
        out.contains(&format!(
            "(the file is under partition {wrong}: not where the ring puts it)"
        )),
        "{out}"
    );
    assert!(out.contains("X-Backend-Storage-Policy-Index: 1"));
    assert!(!out.contains("ETag"));
}

#[test]
fn info_of_container_and_account_databases() {
    let env = Env::new();
    let ring = Ring::from_data(ring_data()).unwrap();
    let chash = secret().hash_path("AUTH_test", Some("c"), None);
    let cpart = ring.get_part(&secret(), "AUTH_test", Some("c"), None);
    let db = cairn_db::db_path(&env.devices(), "sda", "containers", cpart, &chash);
    let (b, _) = ContainerBroker::create(
        &db,
        "AUTH_test",
        "c",
        Timestamp::from_secs(1_700_000_000),
        1,
    )
    .unwrap();
    b.put_object(
        &ObjectRecord::put("o1", Timestamp::from_secs(1_700_000_001), 42, "t", "e").with_policy(1),
    )
    .unwrap();
    b.delete_object("o2", Timestamp::from_secs(1_700_000_002), 1)
        .unwrap();
    b.commit_puts().unwrap();
    let mut md = cairn_db::Metadata::new();
    md.insert(
        "X-Container-Meta-Test".into(),
        ("yes".into(), Timestamp::from_secs(1_700_000_003).internal()),
    );
    b.update_metadata(&md, Some(&Constraints::default()))
        .unwrap();
    drop(b);
    let out = info_report(&env.info_args(&db)).unwrap();
    assert!(out.contains("Path: /AUTH_test/c\n"), "{out}");
    assert!(
        out.contains(&format!("Container hash: {chash} (matches the directory)")),
        "{out}"
    );
    assert!(out.contains("  object_count: 1\n"), "{out}");
    assert!(out.contains("  bytes_used: 42\n"));
    assert!(out.contains("  storage_policy_index: 1\n"));
    assert!(out.contains("  put_timestamp: 1700000000.00000 (2023-11-14T22:13:20.000000)"));
    assert!(out.contains("  Deleted: no\n"));
    assert!(out.contains("  X-Container-Meta-Test: yes\n"), "{out}");
    assert!(out.contains("Rows: 1 objects, 1 deleted"), "{out}");
    assert!(out.contains(&format!("Partition: {cpart} (matches the directory)")));
    assert!(out.contains("container.ring"));
    assert_eq!(out.matches(": primary (replica ").count(), 3);

    let ahash = secret().hash_path("AUTH_test", None, None);
    let apart = ring.get_part(&secret(), "AUTH_test", None, None);
    let adb = cairn_db::db_path(&env.devices(), "sdc", "accounts", apart, &ahash);
    let (a, _) =
        AccountBroker::create(&adb, "AUTH_test", Timestamp::from_secs(1_700_000_000)).unwrap();
    a.put_container(&ContainerRecord::new(
        "c",
        Timestamp::from_secs(1_700_000_000),
        Timestamp::ZERO,
        1,
        42,
        1,
    ))
    .unwrap();
    a.commit_puts().unwrap();
    drop(a);
    let out = info_report(&env.info_args(&adb)).unwrap();
    assert!(out.contains("Path: /AUTH_test\n"), "{out}");
    assert!(out.contains(&format!("Account hash: {ahash} (matches the directory)")));
    assert!(out.contains("  container_count: 1\n"), "{out}");
    assert!(
        out.contains("Policy stats:\n  storage_policy_index=1 container_count=1"),
        "{out}"
    );
    assert!(out.contains("Rows: 1 containers, 0 deleted"));
    assert!(out.contains("account.ring"));
}

#[test]
fn info_refuses_bad_input() {
    let env = Env::new();
    let dir = env.dir.path();
    assert!(info_report(&env.info_args(&dir.join("missing.data"))).is_err());
    assert!(info_report(&env.info_args(dir)).is_err());
    fs::write(dir.join("notes.txt"), b"x").unwrap();
    assert!(info_report(&env.info_args(&dir.join("notes.txt")))
        .unwrap_err()
        .0
        .contains("not an object file"));
    // An object file name without metadata.
    fs::write(dir.join("1700000000.00000.data"), b"x").unwrap();
    assert!(
        info_report(&env.info_args(&dir.join("1700000000.00000.data")))
            .unwrap_err()
            .0
            .contains("cannot read metadata")
    );
    // A .db that is not SQLite.
    fs::write(dir.join("x.db"), b"not sqlite at all, certainly not").unwrap();
    assert!(info_report(&env.info_args(&dir.join("x.db"))).is_err());
    let code = info(env.info_args(&dir.join("notes.txt")));
    assert_eq!(format!("{code:?}"), format!("{:?}", ExitCode::from(2)));
}

#[derive(clap::Parser)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(clap::Subcommand)]
enum Cmd {
    GetNodes(GetNodesArgs),
    Info(InfoArgs),
}

#[test]
fn arguments_parse_as_subcommands() {
    use clap::{CommandFactory, Parser};
    Cli::command().debug_assert();
    let cli = Cli::try_parse_from([
        "cairn",
        "get-nodes",
        "/etc/cairn/rings/object-1.ring",
        "AUTH_test",
        "c",
        "o/p",
        "--json",
        "--handoffs",
        "2",
        "--cluster-config",
        "x.toml",
    ])
    .unwrap();
    let Cmd::GetNodes(a) = cli.cmd else {
        panic!("not get-nodes")
    };
    assert_eq!(a.object.as_deref(), Some("o/p"));
    assert_eq!((a.json, a.handoffs), (true, Some(2)));
    assert_eq!(a.cluster_config, PathBuf::from("x.toml"));
    assert_eq!(a.devices, PathBuf::from("/srv/node"));
    let cli = Cli::try_parse_from(["cairn", "info", "/srv/node/sda/x.db"]).unwrap();
    let Cmd::Info(i) = cli.cmd else {
        panic!("not info")
    };
    assert_eq!(i.cluster_config, PathBuf::from("/etc/cairn/cairn.toml"));
    assert!(Cli::try_parse_from(["cairn", "get-nodes", "object.ring"]).is_err());
}
