//! Access tokens: JWTs signed with HMAC-SHA256 (`{"alg":"HS256"}`, claims `sub` and
//! `exp` in epoch seconds, as Nacos's `JwtTokenManager`), and the key they are signed
//! with.
//!
//! The key is Base64 text, as Nacos's `token.secret.key`: from `auth.token_key` (or
//! `NACRE_AUTH_TOKEN_KEY`), else from `<data dir>/auth/token.key`, else 64 random
//! bytes generated at first start and written there with mode 0600. A key of fewer than
//! 32 bytes, or one of the keys published in Nacos's releases and docs, is refused.
//! A token is accepted only with an `exp` that is in the future and no further ahead
//! than the configured lifetime, and only with HS256 (so `alg: none` and keys of other
//! algorithms never verify).

use std::io::Write as _;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Shortest key accepted, bytes (256 bits, as Nacos requires for HS256).
pub const MIN_KEY_BYTES: usize = 32;

/// Keys shipped in Nacos's default configuration or printed in its docs and images:
/// anyone can sign tokens with them.
const PUBLIC_KEYS: [&str; 3] = [
    // nacos.core.auth.plugin.nacos.token.secret.key in application.properties up to 2.2.0
    // and NACOS_AUTH_TOKEN in the nacos-docker examples.
    "SecretKey012345678901234567890123456789012345678901234567890123456789",
    // The example in Nacos's auth docs ("ThisIsMyCustomSecretKey012345678").
    "VGhpc0lzTXlDdXN0b21TZWNyZXRLZXkwMTIzNDU2Nzg=",
    // Nacos 1.4's nacos.core.auth.default.token.secret.key.
    "SecretKey012345678901234567890123456789012345678901234567890123456789==",
];

/// Why a key is refused or cannot be had.
#[derive(Debug, Error)]
pub enum KeyError {
    /// Not Base64.
    #[error("the token key ({origin}) is not Base64 text, as Nacos's token.secret.key")]
    NotBase64 {
        /// Where it came from.
        origin: String,
    },
    /// Too short.
    #[error(
        "the token key ({origin}) is {len} bytes; at least {MIN_KEY_BYTES} are needed \
         (e.g. `openssl rand -base64 48`)"
    )]
    TooShort {
        /// Where it came from.
        origin: String,
        /// Its length in bytes, decoded.
        len: usize,
    },
    /// A key published with Nacos.
    #[error(
        "the token key ({origin}) is one published with Nacos, so anyone could sign tokens; \
         set a key of your own (e.g. `openssl rand -base64 48`) or leave it empty to have one generated"
    )]
    Public {
        /// Where it came from.
        origin: String,
    },
    /// The key file could not be read or written.
    #[error("cannot {what} the token key file {path}")]
    File {
        /// `read` or `write`.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

/// Why a token is refused.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum TokenError {
    /// Malformed, wrongly signed, another algorithm, no `exp`, or an `exp` beyond the
    /// configured lifetime.
    #[error("token invalid!")]
    Invalid,
    /// Its `exp` has passed.
    #[error("token expired!")]
    Expired,
}

#[derive(Serialize, Deserialize)]
struct Claims {
    sub: String,
    exp: u64,
}

/// Where the key was found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeySource {
    /// `auth.token_key` or `NACRE_AUTH_TOKEN_KEY`.
    Configured,
    /// The key file of an earlier start.
    File,
    /// Generated now and written to the key file.
    Generated,
}

/// The signing key and the token rules.
pub struct TokenKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    ttl_secs: u64,
}

/// Decodes and checks a Base64 key; `origin` names where it came from in errors.
pub fn check_key(text: &str, origin: &str) -> Result<Vec<u8>, KeyError> {
    let text = text.trim();
    let decode = |t: &str| STANDARD.decode(t).or_else(|_| STANDARD_NO_PAD.decode(t));
    let public = PUBLIC_KEYS
        .iter()
        .any(|k| *k == text || matches!((decode(k), decode(text)), (Ok(a), Ok(b)) if a == b));
    if public {
        return Err(KeyError::Public {
            origin: origin.to_string(),
        });
    }
    let bytes = decode(text).map_err(|_| KeyError::NotBase64 {
        origin: origin.to_string(),
    })?;
    if bytes.len() < MIN_KEY_BYTES {
        return Err(KeyError::TooShort {
            origin: origin.to_string(),
            len: bytes.len(),
        });
    }
    Ok(bytes)
}

/// The key: `configured` when not empty, else the key file in `dir`, else a new one
/// written there (mode 0600, the directory 0700).
pub fn load_key(configured: &str, dir: &Path) -> Result<(Vec<u8>, KeySource), KeyError> {
    if !configured.trim().is_empty() {
        return Ok((
            check_key(configured, "auth.token_key")?,
            KeySource::Configured,
        ));
    }
    let path = dir.join("token.key");
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok((
            check_key(&text, &path.display().to_string())?,
            KeySource::File,
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut bytes = vec![0u8; 64];
            rand::RngCore::fill_bytes(&mut rand::rng(), &mut bytes);
            write_secret(&path, &STANDARD.encode(&bytes)).map_err(|source| KeyError::File {
                what: "write",
                path: path.clone(),
                source,
            })?;
            Ok((bytes, KeySource::Generated))
        }
        Err(source) => Err(KeyError::File {
            what: "read",
            path,
            source,
        }),
    }
}

/// Writes a new secret file readable by its owner only (mode 0600), in a directory
/// only its owner may enter (0700). Fails if the file exists.
pub fn write_secret(path: &Path, text: &str) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    if let Some(dir) = path.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(text.as_bytes())?;
    file.write_all(b"\n")?;
    file.sync_all()
}

impl TokenKeys {
    /// Keys from the secret bytes; tokens live `ttl_secs` seconds.
    pub fn new(secret: &[u8], ttl_secs: u64) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_required_spec_claims(&["exp", "sub"]);
        validation.leeway = 0;
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            ttl_secs,
        }
    }

    /// Seconds a token lives.
    pub fn ttl_secs(&self) -> u64 {
        self.ttl_secs
    }

    /// A token for `username`, valid for the configured lifetime from `now_secs`.
    pub fn mint(&self, username: &str, now_secs: u64) -> String {
        let claims = Claims {
            sub: username.to_string(),
            exp: now_secs.saturating_add(self.ttl_secs),
        };
        // HMAC signing of a small struct cannot fail.
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .unwrap_or_default()
    }

    /// The user a token names and its expiry (epoch seconds), if it verifies at
    /// `now_secs`.
    pub fn verify(&self, token: &str, now_secs: u64) -> Result<(String, u64), TokenError> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => TokenError::Expired,
                _ => TokenError::Invalid,
            })?;
        let exp = data.claims.exp;
        if exp <= now_secs {
            return Err(TokenError::Expired);
        }
        // A token that outlives anything this server issues was not issued by it (or
        // was minted with a leaked key for the long run): refuse it.
        if exp > now_secs.saturating_add(self.ttl_secs).saturating_add(60) {
            return Err(TokenError::Invalid);
        }
        Ok((data.claims.sub, exp))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> u64 {
        crate::model::now_millis() / 1000
    }

    #[test]
    fn tokens_verify_until_they_expire_and_only_with_our_key() {
        let keys = TokenKeys::new(&[7u8; 32], 100);
        let t = keys.mint("alice", now());
        assert_eq!(
            keys.verify(&t, now()).map(|(user, _)| user),
            Ok("alice".into())
        );
        assert_eq!(keys.verify(&t, now() + 200), Err(TokenError::Expired));
        let other = TokenKeys::new(&[8u8; 32], 100);
        assert_eq!(other.verify(&t, now()), Err(TokenError::Invalid));
        // An expiry beyond our lifetime is refused.
        let long = TokenKeys::new(&[7u8; 32], 100_000);
        assert_eq!(
            keys.verify(&long.mint("alice", now()), now()),
            Err(TokenError::Invalid)
        );
        // alg: none.
        let payload = STANDARD_NO_PAD.encode(format!(r#"{{"sub":"alice","exp":{}}}"#, now() + 50));
        let none = format!("{}.{payload}.", STANDARD_NO_PAD.encode(r#"{"alg":"none"}"#));
        assert_eq!(keys.verify(&none, now()), Err(TokenError::Invalid));
        assert_eq!(keys.verify("garbage", now()), Err(TokenError::Invalid));
    }

    #[test]
    fn weak_and_public_keys_are_refused() {
        assert!(matches!(
            check_key(PUBLIC_KEYS[0], "test"),
            Err(KeyError::Public { .. })
        ));
        assert!(matches!(
            check_key(
                &STANDARD.encode(b"ThisIsMyCustomSecretKey012345678"),
                "test"
            ),
            Err(KeyError::Public { .. })
        ));
        assert!(matches!(
            check_key(&STANDARD.encode([1u8; 31]), "test"),
            Err(KeyError::TooShort { len: 31, .. })
        ));
        assert!(matches!(
            check_key("not base64 !!", "test"),
            Err(KeyError::NotBase64 { .. })
        ));
        assert_eq!(
            check_key(&STANDARD.encode([1u8; 32]), "test")
                .unwrap()
                .len(),
            32
        );
    }
}
