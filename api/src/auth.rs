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

/// Signature algorithm of API tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Algorithm {
    /// HMAC-SHA256 with a shared secret (the default).
    HS256,
    /// ECDSA P-256 with SHA-256: other services can verify with the public key.
    ES256,
    /// Ed25519.
    EdDSA,
}

impl std::str::FromStr for Algorithm {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "HS256" => Ok(Algorithm::HS256),
            "ES256" => Ok(Algorithm::ES256),
            "EdDSA" => Ok(Algorithm::EdDSA),
            other => Err(format!("unknown JWT algorithm '{other}' (HS256, ES256, EdDSA)")),
        }
    }
}

/// Signs and verifies bearer tokens with one algorithm: a token signed with
/// any other algorithm is refused, whatever its header says.
pub struct Authenticator {
    alg: Algorithm,
    encoding: jsonwebtoken::EncodingKey,
    decoding: jsonwebtoken::DecodingKey,
}

impl Authenticator {
    pub fn hs256(secret: &[u8]) -> Authenticator {
        Authenticator {
            alg: Algorithm::HS256,
            encoding: jsonwebtoken::EncodingKey::from_secret(secret),
            decoding: jsonwebtoken::DecodingKey::from_secret(secret),
        }
    }

    /// ES256 from a PKCS#8 P-256 private key and its uncompressed public point.
    pub fn es256(pkcs8: &[u8], public_point: &[u8]) -> Authenticator {
        Authenticator {
            alg: Algorithm::ES256,
            encoding: jsonwebtoken::EncodingKey::from_ec_der(pkcs8),
            decoding: jsonwebtoken::DecodingKey::from_ec_der(public_point),
        }
    }

    /// EdDSA from a PKCS#8 Ed25519 private key and its 32-byte public key.
    pub fn eddsa(pkcs8: &[u8], public_key: &[u8]) -> Authenticator {
        Authenticator {
            alg: Algorithm::EdDSA,
            encoding: jsonwebtoken::EncodingKey::from_ed_der(pkcs8),
            decoding: jsonwebtoken::DecodingKey::from_ed_der(public_key),
        }
    }

    pub fn algorithm(&self) -> Algorithm {
        self.alg
    }

    fn jwt_alg(&self) -> jsonwebtoken::Algorithm {
        match self.alg {
            Algorithm::HS256 => jsonwebtoken::Algorithm::HS256,
            Algorithm::ES256 => jsonwebtoken::Algorithm::ES256,
            Algorithm::EdDSA => jsonwebtoken::Algorithm::EdDSA,
        }
    }

    pub fn mint(&self, claims: &Claims) -> Result<String, jsonwebtoken::errors::Error> {
        jsonwebtoken::encode(&jsonwebtoken::Header::new(self.jwt_alg()), claims, &self.encoding)
    }

    pub fn verify(&self, token: &str) -> Result<Claims, jsonwebtoken::errors::Error> {
        let mut v = jsonwebtoken::Validation::new(self.jwt_alg());
        v.set_issuer(&[ISSUER]);
        v.leeway = 30;
        Ok(jsonwebtoken::decode::<Claims>(token, &self.decoding, &v)?.claims)
    }

    /// The principal behind an `Authorization` header value.
    pub fn principal(&self, authorization: Option<&str>) -> Result<Principal, Problem> {
        let header = authorization.ok_or_else(|| Problem::new(Kind::Unauthorized, "no Authorization header"))?;
        // RFC 9110 11.1: the scheme name is case-insensitive ("bearer", "BEARER").
        let token = header
            .split_once(' ')
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("Bearer"))
            .map(|(_, token)| token)
            .ok_or_else(|| Problem::new(Kind::Unauthorized, "the Authorization header must be 'Bearer <token>'"))?;
        let claims = self.verify(token.trim()).map_err(|e| {
            use jsonwebtoken::errors::ErrorKind;
            let why = match e.kind() {
                ErrorKind::ExpiredSignature => "the token has expired",
                ErrorKind::InvalidSignature => "the token's signature is invalid",
                ErrorKind::InvalidAlgorithm => "the token is not signed with this CSMS's algorithm",
                ErrorKind::InvalidIssuer => "the token was not issued by this CSMS",
                _ => "the token is malformed or invalid",
            };
            Problem::new(Kind::Unauthorized, why)
        })?;
        Ok(Principal { subject: claims.sub, tenant: claims.tenant, role: claims.role, expires_at: claims.exp })
    }
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Authenticator({:?})", self.alg)
    }
}

/// Who is calling, from a verified token.
#[derive(Debug, Clone, PartialEq)]
pub struct Principal {
    pub subject: String,
    pub tenant: String,
    pub role: Role,
    /// Expiry of the token (Unix seconds): long-lived responses end there.
    pub expires_at: i64,
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
    fn bearer_scheme_is_case_insensitive() {
        let auth = Authenticator::hs256(b"secret-secret-secret-secret-0123");
        let t = auth.mint(&claims_far()).unwrap();
        for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
            let p = auth.principal(Some(&format!("{scheme} {t}"))).unwrap_or_else(|e| panic!("{scheme}: {e:?}"));
            assert_eq!(p.role, Role::Admin, "{scheme}");
        }
        for wrong in [format!("Basic {t}"), format!("Bearer-{t}"), format!("Bearers {t}"), format!("Bearer{t}")] {
            let e = auth.principal(Some(&wrong)).unwrap_err();
            assert_eq!(
                (e.status, e.detail.as_str()),
                (401, "the Authorization header must be 'Bearer <token>'"),
                "{wrong}"
            );
        }
    }

    fn claims_far() -> Claims {
        claims(time::OffsetDateTime::now_utc().unix_timestamp() + 3600)
    }

    #[test]
    fn asymmetric_algorithms_and_no_algorithm_confusion() {
        use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair};
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let ec = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let ec_pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, ec.as_ref()).unwrap();
        let es = Authenticator::es256(ec.as_ref(), ec_pair.public_key().as_ref());
        let ed = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
        let ed_pair = Ed25519KeyPair::from_pkcs8(ed.as_ref()).unwrap();
        let eddsa = Authenticator::eddsa(ed.as_ref(), ed_pair.public_key().as_ref());
        let hs = Authenticator::hs256(b"secret-secret-secret-secret-0123");
        for a in [&es, &eddsa, &hs] {
            let t = a.mint(&claims_far()).unwrap();
            assert_eq!(a.verify(&t).unwrap(), claims_far(), "{a:?}");
            for other in [&es, &eddsa, &hs] {
                if !std::ptr::eq(a, other) {
                    assert!(other.verify(&t).is_err(), "{other:?} accepted a token of {a:?}");
                }
            }
        }
        // Another ES256 key does not verify ours.
        let ec2 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let ec2_pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, ec2.as_ref()).unwrap();
        let es2 = Authenticator::es256(ec2.as_ref(), ec2_pair.public_key().as_ref());
        assert!(es2.verify(&es.mint(&claims_far()).unwrap()).is_err());
        // "alg: none" is never accepted.
        use base64::Engine;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let none = format!(
            "{}.{}.",
            b64.encode(r#"{"alg":"none","typ":"JWT"}"#),
            b64.encode(serde_json::to_vec(&claims_far()).unwrap())
        );
        for a in [&es, &eddsa, &hs] {
            assert!(a.principal(Some(&format!("Bearer {none}"))).is_err());
        }
    }

    #[test]
    fn roles() {
        let p = |role| Principal { subject: "s".into(), tenant: "t".into(), role, expires_at: 0 };
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
