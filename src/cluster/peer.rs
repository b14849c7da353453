//! Calls between members: HTTP on each member's API port, under `/nacos/internal/`,
//! with the cluster secret in a header and a compact, versioned binary body (DESIGN §5).
//!
//! A body is one version byte ([`WIRE_VERSION`]) then the message in postcard. A
//! receiver refuses a version it does not know with 400, so a rolling upgrade that
//! changes a message shows up as refused calls, not as misread data.

use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use thiserror::Error;

/// The header that carries the cluster secret on every peer call.
pub const SECRET_HEADER: &str = "x-nacre-cluster-secret";

/// The header that names the calling member (its address in the members list).
pub const FROM_HEADER: &str = "x-nacre-member";

/// The version of the peer messages' encoding, the first byte of every body.
pub const WIRE_VERSION: u8 = 1;

/// Why a peer call failed.
#[derive(Debug, Error)]
pub enum PeerError {
    /// No answer: refused, timed out, reset.
    #[error("peer {peer} unreachable: {source}")]
    Unreachable {
        /// The peer.
        peer: String,
        /// The cause.
        source: reqwest::Error,
    },
    /// An answer other than 200.
    #[error("peer {peer} answered {status}: {body}")]
    Status {
        /// The peer.
        peer: String,
        /// The HTTP status.
        status: u16,
        /// The start of the answer's body.
        body: String,
    },
    /// A body that does not decode.
    #[error("cannot decode a peer message: {0}")]
    Decode(String),
}

/// Encodes a peer message: [`WIRE_VERSION`], then postcard.
pub fn encode<T: Serialize>(message: &T) -> Vec<u8> {
    let out = vec![WIRE_VERSION];
    // postcard writes to a Vec without failing for our (serde-derived) types.
    match postcard::to_extend(message, out) {
        Ok(v) => v,
        Err(e) => {
            tracing::error!(error = %e, "cannot encode a peer message");
            vec![WIRE_VERSION]
        }
    }
}

/// Decodes a peer message; errors on another version or bad bytes.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, PeerError> {
    match bytes.split_first() {
        Some((&WIRE_VERSION, rest)) => {
            postcard::from_bytes(rest).map_err(|e| PeerError::Decode(e.to_string()))
        }
        Some((v, _)) => Err(PeerError::Decode(format!(
            "message version {v}, this node speaks {WIRE_VERSION}"
        ))),
        None => Err(PeerError::Decode("empty message".into())),
    }
}

/// Makes peer calls. Cheap to clone.
#[derive(Clone)]
pub struct PeerClient {
    http: reqwest::Client,
    secret: std::sync::Arc<str>,
    this: std::sync::Arc<str>,
}

impl PeerClient {
    /// A client for node `this` that sends `secret` on every call.
    pub fn new(this: &str, secret: &str) -> Self {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(1))
            .pool_idle_timeout(Duration::from_secs(30))
            .tcp_nodelay(true)
            .build()
            .unwrap_or_default();
        Self {
            http,
            secret: secret.into(),
            this: this.into(),
        }
    }

    /// POSTs `body` (an [`encode`]d message) to `http://<peer><path>` and returns the
    /// answer's body, within `timeout`.
    pub async fn post(
        &self,
        peer: &str,
        path: &str,
        body: Vec<u8>,
        timeout: Duration,
    ) -> Result<bytes::Bytes, PeerError> {
        let request = self
            .http
            .post(format!("http://{peer}{path}"))
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .body(body);
        self.send(peer, request, timeout).await
    }

    /// GETs `http://<peer><path>` and returns the answer's body, within `timeout`.
    pub async fn get(
        &self,
        peer: &str,
        path: &str,
        timeout: Duration,
    ) -> Result<bytes::Bytes, PeerError> {
        let request = self.http.get(format!("http://{peer}{path}"));
        self.send(peer, request, timeout).await
    }

    async fn send(
        &self,
        peer: &str,
        request: reqwest::RequestBuilder,
        timeout: Duration,
    ) -> Result<bytes::Bytes, PeerError> {
        let unreachable = |source| PeerError::Unreachable {
            peer: peer.to_string(),
            source,
        };
        let response = request
            .header(SECRET_HEADER, &*self.secret)
            .header(FROM_HEADER, &*self.this)
            .timeout(timeout)
            .send()
            .await
            .map_err(unreachable)?;
        let status = response.status().as_u16();
        let body = response.bytes().await.map_err(unreachable)?;
        if status != 200 {
            return Err(PeerError::Status {
                peer: peer.to_string(),
                status,
                body: String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned(),
            });
        }
        Ok(body)
    }
}

/// Compares two secrets in time that does not depend on where they differ.
pub fn secret_matches(given: &[u8], expected: &[u8]) -> bool {
    use sha2::{Digest, Sha256};
    // Equal-length digests, compared without an early exit.
    let a = Sha256::digest(given);
    let b = Sha256::digest(expected);
    a.iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_carry_their_version() {
        let bytes = encode(&("stock", 7u64));
        assert_eq!(bytes[0], WIRE_VERSION);
        assert_eq!(
            decode::<(String, u64)>(&bytes).unwrap(),
            ("stock".into(), 7)
        );
        let mut other = bytes.clone();
        other[0] = WIRE_VERSION + 1;
        assert!(decode::<(String, u64)>(&other).is_err());
        assert!(decode::<(String, u64)>(&[]).is_err());
        assert!(secret_matches(b"s3cret", b"s3cret"));
        assert!(!secret_matches(b"s3cret", b"s3creT"));
        assert!(!secret_matches(b"", b"s3cret"));
    }
}
