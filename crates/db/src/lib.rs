//! # cairn-db
//!
//! The SQLite brokers shared by container and account servers (`shared/DESIGN.md`,
//! "Container and account servers"; `PROTOCOLS.md`, "Databases"). Sits above `cairn-ring`
//! and `cairn-common`; the container and account servers sit above it.
//!
//! * [`ContainerBroker`] / [`AccountBroker`] are one generic [`Broker`] over a [`Kind`].
//! * SQLite runs in **WAL mode** with `synchronous=FULL` (allowed by PROTOCOLS, Cairn
//!   difference 10); whole-file copies use [`Broker::backup_to`] (backup API, consistent
//!   snapshot, written in rollback-journal mode).
//! * Row updates go through the pending file with **group commit**: an update is
//!   acknowledged only after its record is fsynced (or merged into SQLite), and concurrent
//!   writers share one `fdatasync` (see [`pending`]).
//! * Counts and the rolling `chexor` hash are maintained by SQL triggers.
//! * Listings ([`list`]) follow Swift's `list_objects_iter` exactly (checked against a
//!   model by a proptest) and run in one read transaction; [`format`] renders Swift's
//!   JSON/XML/plain bodies.
//! * Replication: the receiving RPC ([`rpc`], HTTP glue in [`http`]) and the sending
//!   daemon ([`replicator`]), generic over containers and accounts.
//!
//! Benchmarks (`cargo bench -p cairn-db --bench broker`, this 2-core VM, ext4 on virtio):
//! durable updates into one container ≈ 7,200/s from 1 thread (one `fdatasync` each) and
//! ≈ 30,000/s from 16–64 threads (group commit); a 10,000-entry page from a 1,000,000-row
//! container ≈ 3 ms plain or with prefix, ≈ 30 ms with a delimiter (10,000 subdirs, one
//! index re-seek each); rendering that page as JSON ≈ 3 ms.
//!
//! Deliberate choices where PROTOCOLS is silent or Swift is order-dependent:
//! * container merge: on *equal* part timestamps with different values, the greater value
//!   wins (so any order and batching of the same updates gives the same rows and hash);
//! * account merge: counts come from the incoming row unless it is strictly older (its
//!   newest timestamp is older than the stored row's newest), and unchanged rows are not
//!   rewritten;
//! * reclaiming tombstone rows leaves the rolling hash unchanged (as PROTOCOLS says).

pub mod account;
pub mod broker;
pub mod container;
pub mod daemon;
pub mod error;
pub mod format;
pub mod http;
pub mod list;
pub mod pending;
pub mod replicator;
pub mod rpc;
pub mod schema;
pub mod util;

pub use account::{
    AccountBroker, AccountInfo, AccountKind, ContainerEntry, ContainerRecord, PolicyStat,
};
pub use broker::{
    merge_metadata, quarantine_db, quick_check_file, validate_metadata, Broker, Kind, Metadata,
    ReplicationInfo, SyncPoint,
};
pub use container::{ContainerBroker, ContainerInfo, ContainerKind, ObjectEntry, ObjectRecord};
pub use error::{DbError, Result};
pub use list::{ListParams, Listed};
pub use pending::PENDING_CAP;
pub use util::{chexor, db_path};

/// Serialise a bool as 0/1 (Swift's `deleted` column); accept 0/1 or true/false.
pub(crate) mod bool_int {
    use serde::de::{self, Visitor};
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &bool, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u8(u8::from(*v))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = bool;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("0, 1 or a bool")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<bool, E> {
                Ok(v)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<bool, E> {
                Ok(v != 0)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<bool, E> {
                Ok(v != 0)
            }
        }
        d.deserialize_any(V)
    }
}
