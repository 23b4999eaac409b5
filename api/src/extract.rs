//! Request extractors whose failures are problem documents naming the field.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::header;
use http::request::Parts;
use serde::de::DeserializeOwned;

use crate::model::{DEFAULT_LIMIT, MAX_LIMIT, PageQuery};
use crate::problem::{Kind, Problem};
use crate::service::PageRequest;

/// Largest request body the API reads.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// A JSON request body.
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = Problem;

    async fn from_request(req: Request, state: &S) -> Result<Self, Problem> {
        let json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(|m| {
                let m = m.trim().to_ascii_lowercase();
                m == "application/json" || (m.starts_with("application/") && m.ends_with("+json"))
            })
            .unwrap_or(false);
        if !json {
            return Err(Problem::new(Kind::UnsupportedMediaType, "send the body as Content-Type: application/json"));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == http::StatusCode::PAYLOAD_TOO_LARGE {
                Problem::new(Kind::PayloadTooLarge, format!("the body exceeds {MAX_BODY_BYTES} bytes"))
            } else {
                Problem::new(Kind::InvalidBody, "the body could not be read")
            }
        })?;
        parse_json(&bytes).map(JsonBody)
    }
}

/// Deserialises `bytes`, naming the failing field as a JSON pointer.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Problem> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let inner = e.inner().to_string();
        let detail = strip_position(&inner);
        if e.inner().is_syntax() || e.inner().is_eof() {
            return Problem::new(Kind::InvalidBody, format!("the body is not valid JSON: {inner}"));
        }
        let mut pointer = pointer(&e.path().to_string());
        // A missing member is reported at its object: name it.
        if let Some(name) = backticked(&detail)
            && detail.starts_with("missing field")
        {
            pointer = format!("{}/{name}", pointer.trim_end_matches('/'));
        }
        Problem::invalid(if pointer.is_empty() { "/" } else { &pointer }, detail)
    })
}

/// `tags[0].name` -> `/tags/0/name`; `.` (the root) -> ``.
fn pointer(path: &str) -> String {
    if path == "." {
        return String::new();
    }
    let mut out = String::new();
    for part in path.split('.') {
        let (name, rest) = part.split_once('[').map_or((part, ""), |(n, r)| (n, r));
        if !name.is_empty() {
            out.push('/');
            out.push_str(&name.replace('~', "~0").replace('/', "~1"));
        }
        for idx in rest.split('[') {
            let idx = idx.trim_end_matches(']');
            if !idx.is_empty() {
                out.push('/');
                out.push_str(idx);
            }
        }
    }
    out
}

fn backticked(s: &str) -> Option<&str> {
    let start = s.find('`')? + 1;
    let len = s[start..].find('`')?;
    Some(&s[start..start + len])
}

fn strip_position(s: &str) -> String {
    match s.rfind(" at line ") {
        Some(i) => s[..i].to_owned(),
        None => s.to_owned(),
    }
}

/// Path parameters; a path that cannot be read (not UTF-8) names no resource.
pub struct PathParam<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for PathParam<T> {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Problem> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| PathParam(p.0))
            .map_err(|_| Problem::new(Kind::NotFound, "no such resource: the path is not valid"))
    }
}

/// Query parameters.
pub struct QueryParams<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for QueryParams<T> {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Problem> {
        let query = parts.uri.query().unwrap_or("");
        let de = serde_urlencoded_deserializer(query);
        de.map(QueryParams)
    }
}

fn serde_urlencoded_deserializer<T: DeserializeOwned>(query: &str) -> Result<T, Problem> {
    // axum's Query rejection names the parameter in its text: reuse it.
    let uri: http::Uri = format!("/?{query}")
        .parse()
        .map_err(|_| Problem::new(Kind::InvalidParameter, "the query string is not valid"))?;
    axum::extract::Query::<T>::try_from_uri(&uri).map(|q| q.0).map_err(|e| {
        let text = e.body_text();
        let detail = text.strip_prefix("Failed to deserialize query string: ").unwrap_or(&text).to_owned();
        let field = if detail.starts_with("unknown field") || detail.starts_with("missing field") {
            backticked(&detail).map(str::to_owned)
        } else {
            detail.split_once(':').map(|(f, _)| f.trim().to_owned()).filter(|f| !f.contains(' '))
        };
        let p = Problem::new(Kind::InvalidParameter, detail);
        match field {
            Some(f) => p.field(f),
            None => p,
        }
    })
}

impl PageQuery {
    /// Checks the limit and opens the cursor.
    pub fn request(&self) -> Result<PageRequest, Problem> {
        let limit = self.limit.unwrap_or(DEFAULT_LIMIT);
        if !(1..=MAX_LIMIT).contains(&limit) {
            return Err(Problem::new(Kind::InvalidParameter, format!("limit must be 1 to {MAX_LIMIT}")).field("limit"));
        }
        let after = match self.cursor.as_deref() {
            None | Some("") => None,
            Some(c) => Some(open_cursor(c)?),
        };
        Ok(PageRequest { after, limit })
    }
}

/// Wraps a page key into an opaque cursor.
pub fn cursor(key: &str) -> String {
    URL_SAFE_NO_PAD.encode(format!("v1:{key}"))
}

fn open_cursor(c: &str) -> Result<String, Problem> {
    let bad = || Problem::new(Kind::InvalidParameter, "cursor is not one this API issued").field("cursor");
    let raw = URL_SAFE_NO_PAD.decode(c).map_err(|_| bad())?;
    let text = String::from_utf8(raw).map_err(|_| bad())?;
    let key = text.strip_prefix("v1:").ok_or_else(bad)?;
    // Keys are ids and numbers: short and printable.
    if key.is_empty() || key.len() > 128 || key.chars().any(char::is_control) {
        return Err(bad());
    }
    Ok(key.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(rename_all = "camelCase", deny_unknown_fields)]
    #[allow(dead_code)]
    struct Body {
        id: String,
        security_profile: u8,
        tags: Option<Vec<String>>,
    }

    #[test]
    fn errors_name_the_field() {
        let e = parse_json::<Body>(br#"{"id":"a","securityProfile":"x"}"#).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("/securityProfile"));
        assert_eq!(e.status, 422);
        let e = parse_json::<Body>(br#"{"id":"a","securityProfile":1,"tags":["ok",7]}"#).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("/tags/1"));
        let e = parse_json::<Body>(br#"{"securityProfile":1}"#).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("/id"));
        let e = parse_json::<Body>(br#"{"id":"a","securityProfile":1,"colour":"red"}"#).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("/colour"));
        let e = parse_json::<Body>(b"{nope").unwrap_err();
        assert!(e.detail.starts_with("the body is not valid JSON"), "{e:?}");
    }

    #[test]
    fn cursors_round_trip_and_reject_forgeries() {
        let q = PageQuery { cursor: Some(cursor("CS-17")), limit: Some(10) };
        assert_eq!(q.request().unwrap(), PageRequest { after: Some("CS-17".into()), limit: 10 });
        let forged = PageQuery { cursor: Some("CS-17".into()), limit: None };
        assert_eq!(forged.request().unwrap_err().field.as_deref(), Some("cursor"));
        for key in ["\u{0}", "a\u{0}b", "", &"x".repeat(129)] {
            let q = PageQuery { cursor: Some(URL_SAFE_NO_PAD.encode(format!("v1:{key}"))), limit: None };
            assert_eq!(q.request().unwrap_err().field.as_deref(), Some("cursor"), "{key:?}");
        }
        let big = PageQuery { cursor: None, limit: Some(501) };
        assert_eq!(big.request().unwrap_err().field.as_deref(), Some("limit"));
    }

    #[test]
    fn query_errors_name_the_parameter() {
        let e = serde_urlencoded_deserializer::<PageQuery>("limit=ten").unwrap_err();
        assert_eq!(e.field.as_deref(), Some("limit"), "{e:?}");
        assert_eq!(e.status, 422);
        let e = serde_urlencoded_deserializer::<PageQuery>("limit=5&tags=x").unwrap_err();
        assert_eq!(e.field.as_deref(), Some("tags"), "unknown parameters are refused: {e:?}");
    }
}
