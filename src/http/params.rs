//! Nacos parameter plumbing: parameters come from the query string and from an
//! `application/x-www-form-urlencoded` body, for every method (Servlet
//! `getParameter`); the query wins when a name appears in both; values are trimmed;
//! an empty value counts as absent (`WebUtils.required` / `optional`).

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::header::{CONTENT_LENGTH, CONTENT_TYPE, TRANSFER_ENCODING};

use super::error::ApiError;
use crate::model::{
    DEFAULT_NAMESPACE, ServiceKey, split_service_name, validate_group, validate_namespace,
    validate_service_name,
};

/// The merged parameters of one request. Values are slices of the request's own query
/// string and body where no percent-decoding is needed, so reading parameters costs one
/// allocation for the index instead of two strings per parameter.
#[derive(Clone, Debug, Default)]
pub struct Params {
    query: String,
    body: Bytes,
    /// Query entries first, then body entries, each in request order: the first match
    /// wins, so the query wins over the body (Servlet `getParameter`).
    entries: Vec<Entry>,
    /// Why the request is over a limit ([`MAX_PARAMS`], [`MAX_NAME_LEN`]), if it is.
    over_limit: Option<String>,
}

/// Most parameters a request may carry, query and body together.
pub const MAX_PARAMS: usize = 256;
/// Longest parameter name, bytes.
pub const MAX_NAME_LEN: usize = 128;

#[derive(Clone, Debug)]
struct Entry {
    key: Text,
    value: Text,
}

#[derive(Clone, Debug)]
enum Text {
    /// A trimmed range of the query string.
    Query(usize, usize),
    /// A trimmed range of the body.
    Body(usize, usize),
    /// Decoded (it held `%` escapes or `+`) and trimmed.
    Decoded(Box<str>),
}

/// Whether a request has a body that holds form parameters: one is announced, and its
/// type is a form or not given.
fn has_form_body(headers: &axum::http::HeaderMap) -> bool {
    let has_body = headers.contains_key(CONTENT_LENGTH) || headers.contains_key(TRANSFER_ENCODING);
    has_body
        && headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_none_or(|ct| ct.starts_with("application/x-www-form-urlencoded"))
}

impl Params {
    /// Reads the parameters of a request from its parts and body: the query, and the
    /// body when it is a form (consumed; at most `limit` bytes, else 413). Any other
    /// body is handed back untouched, for the handler.
    pub async fn read(
        parts: &axum::http::request::Parts,
        body: axum::body::Body,
        limit: usize,
    ) -> Result<(Params, Option<axum::body::Body>), ApiError> {
        let query = parts.uri.query().unwrap_or("").to_owned();
        if !has_form_body(&parts.headers) {
            return Ok((
                Params::new(query, Bytes::new()).within_limits()?,
                Some(body),
            ));
        }
        let bytes = axum::body::to_bytes(body, limit).await.map_err(|e| {
            ApiError::too_large(format!(
                "cannot read the request body (at most {limit} bytes): {e}"
            ))
        })?;
        Ok((Params::new(query, bytes).within_limits()?, None))
    }
}

impl<S: Send + Sync> FromRequest<S> for Params {
    type Rejection = ApiError;

    /// The parameters the auth gate already read, or else read from the request.
    async fn from_request(mut req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if let Some(read) = req.extensions_mut().remove::<Params>() {
            return Ok(read);
        }
        let query = req.uri().query().unwrap_or("").to_owned();
        let form_body = has_form_body(req.headers());
        let body = if form_body {
            Bytes::from_request(req, state)
                .await
                .map_err(|e| ApiError::bad_request(format!("cannot read request body: {e}")))?
        } else {
            Bytes::new()
        };
        Params::new(query, body).within_limits()
    }
}

/// Indexes `src` into `entries`; stops, saying why, at [`MAX_PARAMS`] entries or at
/// a name longer than [`MAX_NAME_LEN`] (so a huge body of tiny pairs costs no more).
fn index(src: &str, from_query: bool, entries: &mut Vec<Entry>) -> Option<String> {
    let mut at = 0;
    for pair in src.split('&') {
        let start = at;
        at += pair.len() + 1;
        if pair.is_empty() {
            continue;
        }
        if entries.len() >= MAX_PARAMS {
            return Some(format!(
                "too many parameters: at most {MAX_PARAMS} are accepted"
            ));
        }
        let (k_end, v_start) = match pair.find('=') {
            Some(eq) => (start + eq, start + eq + 1),
            None => (start + pair.len(), start + pair.len()),
        };
        if k_end - start > MAX_NAME_LEN {
            return Some(format!(
                "a parameter name is longer than {MAX_NAME_LEN} bytes"
            ));
        }
        let v_end = start + pair.len();
        let text = |s: usize, e: usize| {
            let raw = &src[s..e];
            if raw.contains(['%', '+']) {
                Text::Decoded(percent_decode(raw).into())
            } else if from_query {
                Text::Query(s, e)
            } else {
                Text::Body(s, e)
            }
        };
        entries.push(Entry {
            key: text(start, k_end),
            value: text(v_start, v_end),
        });
    }
    None
}

/// Decodes one `application/x-www-form-urlencoded` value: `+` is a space, `%XX` a
/// byte (a `%` not followed by two hex digits stays as it is, as Java's decoder does
/// not, but a servlet container tolerates); invalid UTF-8 is replaced, as a servlet
/// container would. One allocation, no intermediate strings.
pub fn percent_decode(raw: &str) -> String {
    fn hex(b: u8) -> Option<u8> {
        match b {
            b'0'..=b'9' => Some(b - b'0'),
            b'a'..=b'f' => Some(b - b'a' + 10),
            b'A'..=b'F' => Some(b - b'A' + 10),
            _ => None,
        }
    }
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => match (
                bytes.get(i + 1).copied().and_then(hex),
                bytes.get(i + 2).copied().and_then(hex),
            ) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    match String::from_utf8(out) {
        Ok(s) => s,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    }
}

impl Params {
    /// Indexes a query string and a form body.
    pub fn new(query: String, body: Bytes) -> Self {
        let mut entries = Vec::with_capacity(16);
        let mut over_limit = index(&query, true, &mut entries);
        // A body that is not UTF-8 is decoded lossily, as a servlet container would.
        let body = match std::str::from_utf8(&body) {
            Ok(_) => body,
            Err(_) => Bytes::from(String::from_utf8_lossy(&body).into_owned()),
        };
        if over_limit.is_none()
            && let Ok(text) = std::str::from_utf8(&body)
        {
            over_limit = index(text, false, &mut entries);
        }
        Params {
            query,
            body,
            entries,
            over_limit,
        }
    }

    /// 400 when the request has more parameters than [`MAX_PARAMS`] or a name longer
    /// than [`MAX_NAME_LEN`].
    pub fn within_limits(self) -> Result<Self, ApiError> {
        match &self.over_limit {
            Some(why) => Err(ApiError::bad_request(why.clone())),
            None => Ok(self),
        }
    }

    fn text<'s>(&'s self, t: &'s Text) -> &'s str {
        match t {
            Text::Query(s, e) => &self.query[*s..*e],
            Text::Body(s, e) => std::str::from_utf8(&self.body[*s..*e]).unwrap_or(""),
            Text::Decoded(d) => d,
        }
    }

    /// A required parameter: 400 `Param '<name>' is required.` when missing or empty.
    pub fn required(&self, name: &str) -> Result<&str, ApiError> {
        self.optional(name)
            .ok_or_else(|| ApiError::bad_request(format!("Param '{name}' is required.")))
    }

    /// An optional parameter, trimmed; missing or blank gives `None`.
    pub fn optional(&self, name: &str) -> Option<&str> {
        self.raw(name).map(str::trim).filter(|v| !v.is_empty())
    }

    /// A non-empty parameter exactly as sent, not trimmed: for names that must match
    /// byte for byte, such as a `username` to authenticate.
    pub fn exact(&self, name: &str) -> Option<&str> {
        self.raw(name).filter(|v| !v.is_empty())
    }

    /// A parameter exactly as sent (decoded, not trimmed), even when empty; for
    /// values whose bytes matter, such as config content.
    pub fn raw(&self, name: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|e| self.text(&e.key) == name)
            .map(|e| self.text(&e.value))
    }

    /// A boolean as Java's `Boolean.parseBoolean`: `true` in any case is true, any other
    /// present value is false; absent gives `default`.
    pub fn boolean(&self, name: &str, default: bool) -> bool {
        self.optional(name)
            .map(|v| v.eq_ignore_ascii_case("true"))
            .unwrap_or(default)
    }

    /// A required boolean that must be `true` or `false` (any case); errors name it.
    pub fn strict_boolean(&self, name: &str) -> Result<bool, ApiError> {
        let raw = self.required(name)?;
        if raw.eq_ignore_ascii_case("true") {
            Ok(true)
        } else if raw.eq_ignore_ascii_case("false") {
            Ok(false)
        } else {
            Err(ApiError::bad_request(format!(
                "Param '{name}' is illegal, it must be true or false: {raw:?}"
            )))
        }
    }

    /// The namespace id (`namespaceId`, default `public`), validated.
    pub fn namespace(&self) -> Result<String, ApiError> {
        let ns = self.optional("namespaceId").unwrap_or(DEFAULT_NAMESPACE);
        validate_namespace(ns).map_err(ApiError::bad_request)?;
        Ok(ns.to_string())
    }

    /// The service key from `serviceName` (plain or `group@@service`), `groupName` and
    /// `namespaceId`, as Nacos's `ServiceNameFilter` builds it. Errors name the field.
    pub fn service_key(&self) -> Result<ServiceKey, ApiError> {
        let raw = self.required("serviceName")?;
        let (group, service) =
            split_service_name(raw, self.optional("groupName")).map_err(ApiError::bad_request)?;
        validate_group(&group).map_err(ApiError::bad_request)?;
        validate_service_name(&service).map_err(ApiError::bad_request)?;
        Ok(ServiceKey::new(self.namespace()?, group, service))
    }

    /// A port: an integer in 0..=65535. Errors name the field.
    pub fn port(&self, name: &str) -> Result<u16, ApiError> {
        let raw = self.required(name)?;
        raw.parse::<u16>().map_err(|_| {
            ApiError::bad_request(format!(
                "Param '{name}' is illegal, it must be an integer in 0..65535: {raw:?}"
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_wins_values_are_trimmed_and_decoded() {
        let p = Params::new(
            "serviceName=DEFAULT_GROUP%40%40stock&ip=+10.0.0.1+&empty=&flag".into(),
            Bytes::from_static(b"ip=10.9.9.9&beat=%7B%22a%22%3A1%7D&port= 80 "),
        );
        assert_eq!(p.optional("serviceName"), Some("DEFAULT_GROUP@@stock"));
        assert_eq!(p.optional("ip"), Some("10.0.0.1"));
        assert_eq!(p.optional("beat"), Some(r#"{"a":1}"#));
        assert_eq!(p.optional("port"), Some("80"));
        assert_eq!(p.optional("empty"), None);
        assert_eq!(p.optional("flag"), None);
        assert_eq!(p.optional("missing"), None);
        assert_eq!(p.raw("ip"), Some(" 10.0.0.1 "));
        assert_eq!(p.raw("empty"), Some(""));
        assert_eq!(percent_decode("a+b%20c%e9%85%8D%zz%"), "a b c\u{914d}%zz%");
        assert!(p.required("empty").is_err());
    }

    #[test]
    fn odd_input_does_not_panic() {
        for raw in [
            "&&&",
            "=",
            "==a",
            "%",
            "%zz=%",
            "a=%ff%fe",
            "\u{e9}=\u{e9}",
            " = ",
        ] {
            let p = Params::new(raw.into(), Bytes::from(raw.as_bytes().to_vec()));
            let _ = p.optional("a");
        }
        let p = Params::new(String::new(), Bytes::from_static(b"a=\xff\xfe&b=1"));
        assert_eq!(p.optional("b"), Some("1"));
    }
}
