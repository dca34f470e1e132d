// Shared test helpers (included with `mod common;`).
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use cairn_common::Timestamp;
use cairn_db::{AccountBroker, ContainerBroker};

pub fn ts(secs: f64) -> Timestamp {
    Timestamp::from_raw((secs * 100_000.0).round() as u64)
}

pub fn cpath(root: &Path, hash: &str) -> PathBuf {
    cairn_db::db_path(root, "sdb1", "containers", 7, hash)
}

pub fn apath(root: &Path, hash: &str) -> PathBuf {
    cairn_db::db_path(root, "sdb1", "accounts", 7, hash)
}

pub fn new_container(root: &Path, hash: &str) -> ContainerBroker {
    let (b, created) = ContainerBroker::create(cpath(root, hash), "a", "c", ts(1.0), 0).unwrap();
    assert!(created);
    b
}

pub fn new_account(root: &Path, hash: &str) -> AccountBroker {
    let (b, created) = AccountBroker::create(apath(root, hash), "a", ts(1.0)).unwrap();
    assert!(created);
    b
}
