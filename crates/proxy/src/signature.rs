//! The HMAC signatures shared by TempURL and FormPost (Swift's `swift.common.digest`):
//! which digests a signature may use, its two spellings (hex, or `<digest>:<base64>`),
//! and the temp-URL keys of an account and a container that sign requests.

use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine;
use hmac::{Mac, SimpleHmac};

use crate::cache::{AccountInfo, ContainerInfo};

/// Digest names a signature may use, sorted (as `/info` lists them).
pub const ALLOWED_DIGESTS: [&str; 3] = ["sha1", "sha256", "sha512"];
/// Allowed but deprecated (Swift still accepts SHA-1 by default and says so in `/info`).
pub const DEPRECATED_DIGESTS: [&str; 1] = ["sha1"];

/// Swift's base64 reading: padding optional, stray trailing bits tolerated.
const B64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

/// The hash under an HMAC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Digest {
    Sha1,
    Sha256,
    Sha512,
}

impl Digest {
    fn from_name(name: &str) -> Option<Digest> {
        match name {
            "sha1" => Some(Digest::Sha1),
            "sha256" => Some(Digest::Sha256),
            "sha512" => Some(Digest::Sha512),
            _ => None,
        }
    }

    /// A hex signature says its digest by its length.
    fn from_hex_len(len: usize) -> Option<Digest> {
        match len {
            40 => Some(Digest::Sha1),
            64 => Some(Digest::Sha256),
            128 => Some(Digest::Sha512),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Digest::Sha1 => "sha1",
            Digest::Sha256 => "sha256",
            Digest::Sha512 => "sha512",
        }
    }

    /// HMAC(key, msg) with this digest.
    pub fn hmac(self, key: &[u8], msg: &[u8]) -> Vec<u8> {
        fn run<D>(key: &[u8], msg: &[u8]) -> Vec<u8>
        where
            D: hmac::digest::Digest + hmac::digest::core_api::BlockSizeUser,
        {
            // HMAC takes keys of any length, so building one cannot fail.
            match SimpleHmac::<D>::new_from_slice(key) {
                Ok(mut m) => {
                    m.update(msg);
                    m.finalize().into_bytes().to_vec()
                }
                Err(_) => Vec::new(),
            }
        }
        match self {
            Digest::Sha1 => run::<sha1::Sha1>(key, msg),
            Digest::Sha256 => run::<sha2::Sha256>(key, msg),
            Digest::Sha512 => run::<sha2::Sha512>(key, msg),
        }
    }
}

/// A signature as a client sent it: its digest and the MAC bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signature {
    pub digest: Digest,
    pub mac: Vec<u8>,
}

impl Signature {
    /// Swift's `extract_digest_and_algorithm`: `<hex>` (40, 64 or 128 digits) or
    /// `<digest>:<base64>` (standard or URL-safe alphabet, padding optional). `None` when
    /// malformed or the digest is not allowed.
    pub fn parse(value: &str) -> Option<Signature> {
        let (digest, mac) = match value.split_once(':') {
            Some((name, b64)) => (Digest::from_name(name)?, decode_b64(b64)?),
            None => (Digest::from_hex_len(value.len())?, hex::decode(value).ok()?),
        };
        Some(Signature { digest, mac })
    }

    /// Does HMAC(key, msg) equal this signature (in constant time)?
    pub fn verifies(&self, key: &[u8], msg: &[u8]) -> bool {
        crate::auth::ct_eq(&self.digest.hmac(key, msg), &self.mac)
    }
}

fn decode_b64(s: &str) -> Option<Vec<u8>> {
    // URL-safe only when it has URL-safe characters and no standard ones (as Swift).
    let s = if (s.contains('-') || s.contains('_')) && !(s.contains('+') || s.contains('/')) {
        s.replace('-', "+").replace('_', "/")
    } else {
        s.to_string()
    };
    let body = s.trim_end_matches('=');
    if body.is_empty() {
        return None;
    }
    B64.decode(body).ok()
}

/// Which metadata a temp-URL key came from: it limits what the signed request may touch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyScope {
    Account,
    Container,
}

/// `X-Account-Meta-Temp-URL-Key(-2)` then `X-Container-Meta-Temp-URL-Key(-2)`, empty
/// values skipped (Swift's `_get_keys`).
pub fn temp_url_keys(account: &AccountInfo, container: &ContainerInfo) -> Vec<(String, KeyScope)> {
    let acct = account
        .temp_url_keys
        .iter()
        .map(|k| (k.clone(), KeyScope::Account));
    let cont = ["temp-url-key", "temp-url-key-2"]
        .iter()
        .filter_map(|n| container.meta.get(*n))
        .map(|k| (k.clone(), KeyScope::Container));
    acct.chain(cont).filter(|(k, _)| !k.is_empty()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_known_answers() {
        // RFC 2202 / RFC 4231 test case 2.
        let (key, msg) = (
            b"Jefe".as_slice(),
            b"what do ya want for nothing?".as_slice(),
        );
        assert_eq!(
            hex::encode(Digest::Sha1.hmac(key, msg)),
            "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79"
        );
        assert_eq!(
            hex::encode(Digest::Sha256.hmac(key, msg)),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert_eq!(
            hex::encode(Digest::Sha512.hmac(key, msg)),
            "164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea2505549758bf75c05a994a6d034f65f8f0e6fdcaeab1a34d4a6b4b636e070a38bce737"
        );
    }

    #[test]
    fn signature_spellings() {
        let mac = Digest::Sha512.hmac(b"k", b"m");
        let hex_sig = hex::encode(&mac);
        let std_b64 = base64::engine::general_purpose::STANDARD.encode(&mac);
        let url_b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&mac);
        for s in [
            hex_sig.clone(),
            format!("sha512:{std_b64}"),
            format!("sha512:{url_b64}"),
            format!("sha512:{}", std_b64.trim_end_matches('=')),
        ] {
            let sig = Signature::parse(&s).unwrap_or_else(|| panic!("{s}"));
            assert_eq!(sig.digest, Digest::Sha512);
            assert!(sig.verifies(b"k", b"m"), "{s}");
            assert!(!sig.verifies(b"other", b"m"), "{s}");
        }
        let sha1 = Signature::parse(&hex::encode(Digest::Sha1.hmac(b"k", b"m"))).unwrap();
        assert_eq!(sha1.digest, Digest::Sha1);
        let sha256 = Signature::parse(&format!(
            "sha256:{}",
            base64::engine::general_purpose::STANDARD.encode(Digest::Sha256.hmac(b"k", b"m"))
        ))
        .unwrap();
        assert!(sha256.verifies(b"k", b"m"));
        // A digest that does not match its claimed name never verifies.
        let wrong = Signature::parse(&format!("sha256:{std_b64}")).unwrap();
        assert!(!wrong.verifies(b"k", b"m"));
        for bad in [
            "",
            "abc",
            &"z".repeat(40),
            &"a".repeat(41),
            "md5:AAAA",
            "sha256:",
            "sha256:!!!!",
            "sha256:A",
        ] {
            assert_eq!(Signature::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn keys_in_order_and_scoped() {
        let account = AccountInfo {
            temp_url_keys: vec!["a1".into(), "".into()],
            ..Default::default()
        };
        let mut container = ContainerInfo::default();
        container.meta.insert("temp-url-key-2".into(), "c2".into());
        container.meta.insert("color".into(), "blue".into());
        assert_eq!(
            temp_url_keys(&account, &container),
            vec![
                ("a1".to_string(), KeyScope::Account),
                ("c2".to_string(), KeyScope::Container)
            ]
        );
        assert!(temp_url_keys(&AccountInfo::default(), &ContainerInfo::default()).is_empty());
    }
}
