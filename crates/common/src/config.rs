//! Configuration files (`shared/DESIGN.md`, "Configuration").
//!
//! Every process of a node reads the cluster file `cairn.toml` (secrets, ring directory,
//! storage policies, constraints). Unknown keys are errors so that a typo never silently
//! falls back to a default; every setting has a default except the hash path secrets,
//! of which at least one must be set.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use cairn_ring::HashPathSecret;

use crate::constraints::Constraints;

/// Why a configuration file was refused. The message names the file and the bad key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: String, message: String },
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
}

/// The `[cluster]` table.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ClusterSection {
    #[serde(default)]
    pub hash_path_prefix: String,
    #[serde(default)]
    pub hash_path_suffix: String,
    /// Where `object.ring`, `container.ring` and `account.ring` live, relative to the file.
    #[serde(default = "default_ring_dir")]
    pub ring_dir: PathBuf,
}

fn default_ring_dir() -> PathBuf {
    PathBuf::from("rings")
}

/// How many replicas must accept an object write before the client hears success.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum WriteQuorum {
    #[default]
    Majority,
    All,
}

/// One `[[policy]]` table: a storage policy with its own object ring.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    pub index: u32,
    pub name: String,
    #[serde(default)]
    pub aliases: Vec<String>,
    #[serde(default)]
    pub default: bool,
    #[serde(default)]
    pub write_quorum: WriteQuorum,
    #[serde(default)]
    pub deprecated: bool,
}

impl PolicyConfig {
    /// The object ring's file name: `object.ring` for policy 0, `object-N.ring` otherwise.
    pub fn ring_name(&self) -> String {
        if self.index == 0 {
            "object.ring".to_string()
        } else {
            format!("object-{}.ring", self.index)
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawClusterFile {
    cluster: ClusterSection,
    #[serde(default)]
    policy: Vec<PolicyConfig>,
    #[serde(default)]
    constraints: Constraints,
}

/// The parsed and checked `cairn.toml`.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterConfig {
    pub cluster: ClusterSection,
    /// Sorted by index; never empty (policy 0 "Policy-0" when none is configured).
    pub policies: Vec<PolicyConfig>,
    /// The effective request constraints (Swift's defaults unless `[constraints]` says
    /// otherwise); every server enforces these and the proxy's `/info` reports them.
    pub constraints: Constraints,
    /// The directory of the file, against which relative paths resolve.
    pub base_dir: PathBuf,
}

impl ClusterConfig {
    /// Read and validate a cluster file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.display().to_string(),
            source,
        })?;
        let base_dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        Self::parse(&text, &path.display().to_string(), base_dir)
    }

    /// Parse and validate the text of a cluster file; `name` appears in errors.
    pub fn parse(text: &str, name: &str, base_dir: PathBuf) -> Result<Self, ConfigError> {
        let raw: RawClusterFile = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: name.to_string(),
            message: toml_error(text, &e),
        })?;
        let invalid = |message: String| ConfigError::Invalid {
            path: name.to_string(),
            message,
        };
        if raw.cluster.hash_path_prefix.is_empty() && raw.cluster.hash_path_suffix.is_empty() {
            return Err(invalid(
                "cluster.hash_path_prefix and cluster.hash_path_suffix are both empty: set at least one secret"
                    .to_string(),
            ));
        }
        let policies = check_policies(raw.policy).map_err(invalid)?;
        raw.constraints.validate().map_err(invalid)?;
        Ok(ClusterConfig {
            cluster: raw.cluster,
            policies,
            constraints: raw.constraints,
            base_dir,
        })
    }

    pub fn hash_path_secret(&self) -> HashPathSecret {
        HashPathSecret::new(
            self.cluster.hash_path_prefix.as_bytes(),
            self.cluster.hash_path_suffix.as_bytes(),
        )
    }

    /// The ring directory, resolved against the file's directory.
    pub fn ring_dir(&self) -> PathBuf {
        self.base_dir.join(&self.cluster.ring_dir)
    }

    /// The default policy (the one marked `default`, else index 0).
    pub fn default_policy(&self) -> &PolicyConfig {
        self.policies
            .iter()
            .find(|p| p.default)
            .unwrap_or(&self.policies[0])
    }

    /// A policy by name or alias, case-insensitively (as `X-Storage-Policy` is matched).
    pub fn policy_by_name(&self, name: &str) -> Option<&PolicyConfig> {
        self.policies.iter().find(|p| {
            p.name.eq_ignore_ascii_case(name)
                || p.aliases.iter().any(|a| a.eq_ignore_ascii_case(name))
        })
    }

    pub fn policy_by_index(&self, index: u32) -> Option<&PolicyConfig> {
        self.policies.iter().find(|p| p.index == index)
    }
}

/// Policies: unique indexes and names, at most one default, and policy 0 always present.
fn check_policies(mut policies: Vec<PolicyConfig>) -> Result<Vec<PolicyConfig>, String> {
    if policies.is_empty() {
        policies.push(PolicyConfig {
            index: 0,
            name: "Policy-0".to_string(),
            aliases: Vec::new(),
            default: true,
            write_quorum: WriteQuorum::Majority,
            deprecated: false,
        });
    }
    policies.sort_by_key(|p| p.index);
    let mut names = BTreeSet::new();
    for (i, p) in policies.iter().enumerate() {
        if i > 0 && policies[i - 1].index == p.index {
            return Err(format!("policy index {} is defined twice", p.index));
        }
        if p.name.is_empty()
            || p.name
                .contains(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
        {
            return Err(format!(
                "policy {}: name {:?} must be non-empty letters, digits and '-'",
                p.index, p.name
            ));
        }
        for n in std::iter::once(&p.name).chain(&p.aliases) {
            if !names.insert(n.to_ascii_lowercase()) {
                return Err(format!("policy name or alias {n:?} is used twice"));
            }
        }
    }
    if policies[0].index != 0 {
        return Err("there must be a policy with index 0".to_string());
    }
    match policies.iter().filter(|p| p.default).count() {
        0 => policies[0].default = true,
        1 => {}
        _ => return Err("more than one policy is marked default".to_string()),
    }
    if policies.iter().any(|p| p.default && p.deprecated) {
        return Err("the default policy cannot be deprecated".to_string());
    }
    Ok(policies)
}

/// toml's own errors span several lines around a source excerpt; keep them on one line
/// and quote the offending line, which holds the key even when the message (a type error,
/// `invalid value: integer `-1`, expected u64`) does not name it.
pub(crate) fn toml_error(text: &str, e: &toml::de::Error) -> String {
    let message = e.message().trim().replace('\n', "; ");
    let Some(start) = e.span().map(|s| s.start) else {
        return message;
    };
    let before = text.get(..start).unwrap_or(text);
    let line_no = before.matches('\n').count() + 1;
    let line = text.lines().nth(line_no - 1).unwrap_or_default().trim();
    format!("line {line_no} `{line}`: {message}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<ClusterConfig, ConfigError> {
        ClusterConfig::parse(text, "cairn.toml", PathBuf::from("/etc/cairn"))
    }

    #[test]
    fn minimal_file_gets_defaults() {
        let c = parse("[cluster]\nhash_path_suffix = \"s\"\n").unwrap();
        assert_eq!(c.ring_dir(), PathBuf::from("/etc/cairn/rings"));
        assert_eq!(c.policies.len(), 1);
        assert_eq!(c.default_policy().index, 0);
        assert_eq!(c.hash_path_secret(), HashPathSecret::new("", "s"));
    }

    #[test]
    fn unknown_keys_are_named() {
        let err = parse("[cluster]\nhash_path_suffix = \"s\"\nring_dri = \"x\"\n").unwrap_err();
        assert!(err.to_string().contains("ring_dri"), "{err}");
    }

    #[test]
    fn secrets_are_required() {
        assert!(parse("[cluster]\n").is_err());
    }

    #[test]
    fn constraints_default_and_override() {
        let c = parse("[cluster]\nhash_path_suffix = \"s\"\n").unwrap();
        assert_eq!(c.constraints, Constraints::default());
        let c = parse(
            "[cluster]\nhash_path_suffix = \"s\"\n[constraints]\nmax_meta_count = 3\n\
             max_object_name_length = 20\nmax_file_size = 100\nextra_header_count = 4\n\
             valid_api_versions = [\"v1\"]\n",
        )
        .unwrap();
        assert_eq!(c.constraints.max_meta_count, 3);
        assert_eq!(c.constraints.max_object_name_length, 20);
        assert_eq!(c.constraints.max_file_size, 100);
        assert_eq!(c.constraints.max_header_count(), 3 + 36 + 4);
        assert_eq!(c.constraints.valid_api_versions, ["v1"]);
        assert_eq!(c.constraints.max_meta_value_length, 256);
    }

    #[test]
    fn bad_constraints_name_the_key() {
        for (bad, key) in [
            ("max_meta_cnt = 3", "max_meta_cnt"),
            ("max_file_size = -1", "max_file_size"),
            ("max_file_size = \"big\"", "max_file_size"),
            (
                "max_object_name_length = 0",
                "constraints.max_object_name_length",
            ),
            (
                "container_listing_limit = 0",
                "constraints.container_listing_limit",
            ),
            ("max_header_size = 1000000", "constraints.max_header_size"),
            ("extra_header_count = -1", "constraints.extra_header_count"),
            ("max_meta_count = 20000", "constraints.max_meta_count"),
            ("valid_api_versions = []", "constraints.valid_api_versions"),
            (
                "valid_api_versions = [\"v/1\"]",
                "constraints.valid_api_versions",
            ),
            (
                "auto_create_account_prefix = \"_\"",
                "auto_create_account_prefix",
            ),
        ] {
            let text = format!("[cluster]\nhash_path_suffix = \"s\"\n[constraints]\n{bad}\n");
            let err = parse(&text).unwrap_err().to_string();
            assert!(err.contains(key), "{bad}: {err}");
        }
    }

    #[test]
    fn policies_are_checked() {
        let ok = parse(
            "[cluster]\nhash_path_suffix = \"s\"\n[[policy]]\nindex = 0\nname = \"gold\"\n\
             [[policy]]\nindex = 1\nname = \"silver\"\naliases = [\"cheap\"]\ndefault = true\nwrite_quorum = \"all\"\n",
        )
        .unwrap();
        assert_eq!(ok.default_policy().name, "silver");
        assert_eq!(ok.policy_by_name("CHEAP").map(|p| p.index), Some(1));
        assert_eq!(
            ok.policy_by_index(1).map(|p| p.ring_name()),
            Some("object-1.ring".into())
        );
        for bad in [
            "[[policy]]\nindex = 1\nname = \"a\"\n",
            "[[policy]]\nindex = 0\nname = \"a\"\n[[policy]]\nindex = 0\nname = \"b\"\n",
            "[[policy]]\nindex = 0\nname = \"a\"\n[[policy]]\nindex = 1\nname = \"A\"\n",
            "[[policy]]\nindex = 0\nname = \"a b\"\n",
            "[[policy]]\nindex = 0\nname = \"a\"\ndefault = true\n[[policy]]\nindex = 1\nname = \"b\"\ndefault = true\n",
            "[[policy]]\nindex = 0\nname = \"a\"\nwrite_quorum = \"some\"\n",
        ] {
            let text = format!("[cluster]\nhash_path_suffix = \"s\"\n{bad}");
            assert!(parse(&text).is_err(), "{bad}");
        }
    }
}
