//! Nacos parameter plumbing: parameters come from the query string and from an
//! `application/x-www-form-urlencoded` body, for every method (Servlet
//! `getParameter`); the query wins when a name appears in both; values are trimmed;
//! an empty value counts as absent (`WebUtils.required` / `optional`).

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::header::CONTENT_TYPE;

use super::error::ApiError;
use crate::model::{
    DEFAULT_NAMESPACE, ServiceKey, split_service_name, validate_group, validate_namespace,
    validate_service_name,
};

/// The merged parameters of one request.
#[derive(Debug, Default)]
pub struct Params(HashMap<String, String>);

impl<S: Send + Sync> FromRequest<S> for Params {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let query = req.uri().query().map(str::to_owned);
        let form_body = req
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_none_or(|ct| ct.starts_with("application/x-www-form-urlencoded"));
        let mut map = HashMap::new();
        if form_body {
            let body = Bytes::from_request(req, state)
                .await
                .map_err(|e| ApiError::bad_request(format!("cannot read request body: {e}")))?;
            for (k, v) in form_urlencoded::parse(&body) {
                map.insert(k.into_owned(), v.trim().to_string());
            }
        }
        if let Some(q) = query {
            for (k, v) in form_urlencoded::parse(q.as_bytes()) {
                map.insert(k.into_owned(), v.trim().to_string());
            }
        }
        Ok(Params(map))
    }
}

impl Params {
    /// Builds parameters from pairs (tests and internal callers).
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        Params(
            pairs
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.trim().to_string()))
                .collect(),
        )
    }

    /// A required parameter: 400 `Param '<name>' is required.` when missing or empty.
    pub fn required(&self, name: &str) -> Result<&str, ApiError> {
        self.optional(name)
            .ok_or_else(|| ApiError::bad_request(format!("Param '{name}' is required.")))
    }

    /// An optional parameter; missing or blank gives `None`.
    pub fn optional(&self, name: &str) -> Option<&str> {
        self.0
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    /// A boolean as Java's `Boolean.parseBoolean`: `true` in any case is true, any other
    /// present value is false; absent gives `default`.
    pub fn boolean(&self, name: &str, default: bool) -> bool {
        self.optional(name)
            .map(|v| v.eq_ignore_ascii_case("true"))
            .unwrap_or(default)
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
