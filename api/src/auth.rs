//! Bearer tokens for the REST API: HS256 JWTs carrying tenant, role and expiry,
//! and the [`Principal`] every route extracts from them.

use axum::extract::{FromRef, FromRequestParts};
use http::request::Parts;
use serde::{Deserialize, Serialize};

use crate::problem::{Kind, Problem};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// Platform operator: manages tenants.
    PlatformAdmin,
    /// A tenant's administrator.
    Admin,
    /// Stations, certificates, firmware, commands.
    Operator,
    /// Read only.
    Viewer,
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "platform-admin" => Ok(Role::PlatformAdmin),
            "admin" => Ok(Role::Admin),
            "operator" => Ok(Role::Operator),
            "viewer" => Ok(Role::Viewer),
            other => Err(format!("unknown role '{other}' (platform-admin, admin, operator, viewer)")),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Claims {
    pub iss: String,
    pub sub: String,
    pub tenant: String,
    pub role: Role,
    pub iat: i64,
    pub exp: i64,
}

pub const ISSUER: &str = "anchorpoint";

pub fn mint(secret: &[u8], claims: &Claims) -> Result<String, jsonwebtoken::errors::Error> {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        claims,
        &jsonwebtoken::EncodingKey::from_secret(secret),
    )
}

pub fn verify(secret: &[u8], token: &str) -> Result<Claims, jsonwebtoken::errors::Error> {
    let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
    v.set_issuer(&[ISSUER]);
    v.leeway = 30;
    Ok(jsonwebtoken::decode::<Claims>(token, &jsonwebtoken::DecodingKey::from_secret(secret), &v)?.claims)
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::PlatformAdmin => "platform-admin",
            Role::Admin => "admin",
            Role::Operator => "operator",
            Role::Viewer => "viewer",
        }
    }
}

/// Verifies bearer tokens.
pub struct Authenticator {
    secret: Vec<u8>,
}

impl Authenticator {
    pub fn hs256(secret: &[u8]) -> Authenticator {
        Authenticator { secret: secret.to_vec() }
    }

    pub fn verify(&self, token: &str) -> Result<Claims, jsonwebtoken::errors::Error> {
        verify(&self.secret, token)
    }

    /// The principal behind an `Authorization` header value.
    pub fn principal(&self, authorization: Option<&str>) -> Result<Principal, Problem> {
        let header = authorization.ok_or_else(|| Problem::new(Kind::Unauthorized, "no Authorization header"))?;
        let token = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .ok_or_else(|| Problem::new(Kind::Unauthorized, "the Authorization header must be 'Bearer <token>'"))?;
        let claims = self.verify(token.trim()).map_err(|e| {
            use jsonwebtoken::errors::ErrorKind;
            let why = match e.kind() {
                ErrorKind::ExpiredSignature => "the token has expired",
                ErrorKind::InvalidSignature => "the token's signature is invalid",
                ErrorKind::InvalidIssuer => "the token was not issued by this CSMS",
                _ => "the token is malformed or invalid",
            };
            Problem::new(Kind::Unauthorized, why)
        })?;
        Ok(Principal { subject: claims.sub, tenant: claims.tenant, role: claims.role })
    }
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Authenticator(HS256)")
    }
}

/// Who is calling, from a verified token.
#[derive(Debug, Clone, PartialEq)]
pub struct Principal {
    pub subject: String,
    pub tenant: String,
    pub role: Role,
}

impl Principal {
    /// The tenant whose resources this caller may read.
    pub fn reader(&self) -> Result<String, Problem> {
        match self.role {
            Role::PlatformAdmin => Err(Problem::new(
                Kind::Forbidden,
                "a platform-admin token manages tenants; use a token of the tenant for its resources",
            )),
            Role::Admin | Role::Operator | Role::Viewer => Ok(self.tenant.clone()),
        }
    }

    /// The tenant whose resources this caller may change (operator or admin).
    pub fn writer(&self) -> Result<String, Problem> {
        let tenant = self.reader()?;
        match self.role {
            Role::Viewer => Err(Problem::new(Kind::Forbidden, "a viewer token is read-only")),
            _ => Ok(tenant),
        }
    }

    /// Tenant administration (audit log and the like).
    pub fn admin(&self) -> Result<String, Problem> {
        let tenant = self.reader()?;
        match self.role {
            Role::Admin => Ok(tenant),
            _ => Err(Problem::new(Kind::Forbidden, "this needs an admin token of the tenant")),
        }
    }

    pub fn platform_admin(&self) -> Result<(), Problem> {
        match self.role {
            Role::PlatformAdmin => Ok(()),
            _ => Err(Problem::new(Kind::Forbidden, "this needs a platform-admin token")),
        }
    }
}

impl<S> FromRequestParts<S> for Principal
where
    S: Send + Sync,
    std::sync::Arc<Authenticator>: FromRef<S>,
{
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let auth = std::sync::Arc::<Authenticator>::from_ref(state);
        let header = parts.headers.get(http::header::AUTHORIZATION).map(|v| v.to_str().unwrap_or(""));
        auth.principal(header)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(exp: i64) -> Claims {
        Claims { iss: ISSUER.into(), sub: "cli".into(), tenant: "default".into(), role: Role::Admin, iat: 0, exp }
    }

    #[test]
    fn round_trip_and_tamper() {
        let far = time::OffsetDateTime::now_utc().unix_timestamp() + 3600;
        let t = mint(b"secret-secret-secret-secret-0123", &claims(far)).unwrap();
        assert_eq!(verify(b"secret-secret-secret-secret-0123", &t).unwrap(), claims(far));
        assert!(verify(b"another-secret-another-secret-01", &t).is_err());
        let expired = mint(b"secret-secret-secret-secret-0123", &claims(1000)).unwrap();
        assert!(verify(b"secret-secret-secret-secret-0123", &expired).is_err());
    }

    #[test]
    fn principal_from_header() {
        let auth = Authenticator::hs256(b"secret-secret-secret-secret-0123");
        let far = time::OffsetDateTime::now_utc().unix_timestamp() + 3600;
        let t = mint(b"secret-secret-secret-secret-0123", &claims(far)).unwrap();
        let p = auth.principal(Some(&format!("Bearer {t}"))).unwrap();
        assert_eq!((p.tenant.as_str(), p.role), ("default", Role::Admin));
        assert_eq!(auth.principal(None).unwrap_err().status, 401);
        assert_eq!(auth.principal(Some(&t)).unwrap_err().status, 401, "scheme missing");
        let expired = mint(b"secret-secret-secret-secret-0123", &claims(1000)).unwrap();
        assert_eq!(auth.principal(Some(&format!("Bearer {expired}"))).unwrap_err().detail, "the token has expired");
        let mut tampered = t.clone();
        tampered.replace_range(tampered.len() - 3.., "AAA");
        assert_eq!(auth.principal(Some(&format!("Bearer {tampered}"))).unwrap_err().status, 401);
    }

    #[test]
    fn roles() {
        let p = |role| Principal { subject: "s".into(), tenant: "t".into(), role };
        assert!(p(Role::Viewer).reader().is_ok());
        assert_eq!(p(Role::Viewer).writer().unwrap_err().status, 403);
        assert!(p(Role::Operator).writer().is_ok());
        assert_eq!(p(Role::Operator).admin().unwrap_err().status, 403);
        assert!(p(Role::Admin).admin().is_ok());
        assert_eq!(p(Role::PlatformAdmin).reader().unwrap_err().status, 403);
        assert!(p(Role::PlatformAdmin).platform_admin().is_ok());
        assert_eq!(p(Role::Admin).platform_admin().unwrap_err().status, 403);
    }
}
