//! Hash paths: where a name lives (`PROTOCOLS.md`, "hash_path").
//!
//! `hash_path(a, c?, o?) = MD5(PREFIX || "/" || a [ "/" c [ "/" o ]] || SUFFIX)`; the
//! partition is the top `part_power` bits of the digest's first four bytes, big-endian.

use md5::{Digest, Md5};

/// The cluster's secret salts (`hash_path_prefix`, `hash_path_suffix` of `cairn.toml`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HashPathSecret {
    pub prefix: Vec<u8>,
    pub suffix: Vec<u8>,
}

impl HashPathSecret {
    pub fn new(prefix: impl Into<Vec<u8>>, suffix: impl Into<Vec<u8>>) -> Self {
        HashPathSecret {
            prefix: prefix.into(),
            suffix: suffix.into(),
        }
    }

    /// The raw MD5 digest of the salted path of `/account[/container[/object]]`.
    ///
    /// An object without a container is a caller bug; the object is then ignored so that
    /// the function stays total (callers validate names before they get here).
    pub fn digest(&self, account: &str, container: Option<&str>, object: Option<&str>) -> [u8; 16] {
        let mut md5 = Md5::new();
        md5.update(&self.prefix);
        md5.update(b"/");
        md5.update(account.as_bytes());
        if let Some(container) = container {
            md5.update(b"/");
            md5.update(container.as_bytes());
            if let Some(object) = object {
                md5.update(b"/");
                md5.update(object.as_bytes());
            }
        }
        md5.update(&self.suffix);
        md5.finalize().into()
    }

    /// The 32-lowercase-hex-digit hash that names directories on disk.
    pub fn hash_path(
        &self,
        account: &str,
        container: Option<&str>,
        object: Option<&str>,
    ) -> String {
        to_hex(&self.digest(account, container, object))
    }
}

/// The partition of a raw digest for a ring of `part_power` (0..=32).
pub fn partition_of(digest: &[u8; 16], part_power: u8) -> u32 {
    let top = u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]]);
    let shift = 32 - u32::from(part_power.min(32));
    // A shift of 32 would overflow: part power 0 has only partition 0.
    top.checked_shr(shift).unwrap_or(0)
}

/// Lowercase hex of a byte slice.
pub fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 0xf)] as char);
    }
    out
}

/// The suffix directory of a hex hash: its last three characters.
pub fn suffix_of(hash_hex: &str) -> &str {
    &hash_hex[hash_hex.len().saturating_sub(3)..]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_path_matches_plain_md5_of_salted_path() {
        let secret = HashPathSecret::new("", "changeme");
        let expected = to_hex(&Md5::digest(b"/AUTH_test/c/ochangeme"));
        assert_eq!(
            secret.hash_path("AUTH_test", Some("c"), Some("o")),
            expected
        );
    }

    #[test]
    fn prefix_and_suffix_both_salt() {
        let a = HashPathSecret::new("p", "s").hash_path("a", None, None);
        let b = HashPathSecret::new("", "ps").hash_path("a", None, None);
        assert_ne!(a, b);
        let expected = to_hex(&Md5::digest(b"p/as"));
        assert_eq!(a, expected);
    }

    #[test]
    fn partition_takes_top_bits() {
        let mut d = [0u8; 16];
        d[0] = 0b1010_0000;
        assert_eq!(partition_of(&d, 0), 0);
        assert_eq!(partition_of(&d, 1), 1);
        assert_eq!(partition_of(&d, 3), 0b101);
        d[..4].copy_from_slice(&0xdead_beefu32.to_be_bytes());
        assert_eq!(partition_of(&d, 32), 0xdead_beef);
        assert_eq!(partition_of(&d, 16), 0xdead);
    }

    #[test]
    fn suffix_is_last_three_hex_digits() {
        assert_eq!(suffix_of("d41d8cd98f00b204e9800998ecf8427e"), "27e");
    }
}
