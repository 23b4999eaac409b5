//! Bearer tokens for the REST API: HS256 JWTs carrying tenant, role and expiry.

use serde::{Deserialize, Serialize};

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
}
