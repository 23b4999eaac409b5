//! CA keys in a PKCS#11 token (an HSM; SoftHSM2 in tests), through `cryptoki`.
//!
//! Keys are generated inside the token as sensitive, non-extractable ECDSA
//! P-256 pairs and used by label; only the public point ever leaves the token.
//! Each signature opens its own session (logging in if the token needs it), so
//! a key is safe to share between threads.

use std::path::Path;
use std::sync::Arc;

use aws_lc_rs::digest;
use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;
use der::asn1::{OctetStringRef, UintRef};
use der::{Decode, Encode, Sequence};
use rcgen::{PKCS_ECDSA_P256_SHA256, PublicKeyData, SignatureAlgorithm, SigningKey};

use crate::PkiError;

/// DER of the named curve prime256v1 (1.2.840.10045.3.1.7), for CKA_EC_PARAMS.
const P256_PARAMS: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];

fn hsm_err(what: &str, e: CkError) -> PkiError {
    PkiError::Hsm(format!("{what}: {e}"))
}

/// One token of a PKCS#11 module, with the user PIN.
pub struct Pkcs11Token {
    ctx: Pkcs11,
    slot: Slot,
    pin: String,
}

impl std::fmt::Debug for Pkcs11Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pkcs11Token").field("slot", &self.slot).finish_non_exhaustive()
    }
}

impl Pkcs11Token {
    /// Loads `module` and finds the initialised token labelled `token_label`.
    pub fn open(module: &Path, token_label: &str, pin: &str) -> Result<Arc<Pkcs11Token>, PkiError> {
        let ctx = Pkcs11::new(module).map_err(|e| hsm_err("loading the PKCS#11 module", e))?;
        match ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
            Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
            Err(e) => return Err(hsm_err("initialising the PKCS#11 module", e)),
        }
        let slots = ctx.get_slots_with_initialized_token().map_err(|e| hsm_err("listing slots", e))?;
        let slot = slots
            .into_iter()
            .find(|s| ctx.get_token_info(*s).map(|t| t.label().trim_end() == token_label).unwrap_or(false))
            .ok_or_else(|| PkiError::Hsm(format!("no token labelled '{token_label}'")))?;
        Ok(Arc::new(Pkcs11Token { ctx, slot, pin: pin.to_owned() }))
    }

    fn session(&self) -> Result<Session, PkiError> {
        let session = self.ctx.open_rw_session(self.slot).map_err(|e| hsm_err("opening a session", e))?;
        match session.login(UserType::User, Some(&AuthPin::from(self.pin.clone()))) {
            Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => Ok(session),
            Err(e) => Err(hsm_err("logging in to the token", e)),
        }
    }

    /// Generates a P-256 key pair in the token under `label` (sensitive,
    /// non-extractable, persistent).
    pub fn generate_key(self: &Arc<Self>, label: &str) -> Result<Pkcs11Key, PkiError> {
        let session = self.session()?;
        let label_attr = Attribute::Label(label.as_bytes().to_vec());
        let public = [
            Attribute::Token(true),
            Attribute::Verify(true),
            Attribute::EcParams(P256_PARAMS.to_vec()),
            label_attr.clone(),
        ];
        let private = [
            Attribute::Token(true),
            Attribute::Private(true),
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
            Attribute::Sign(true),
            label_attr,
        ];
        session
            .generate_key_pair(&Mechanism::EccKeyPairGen, &public, &private)
            .map_err(|e| hsm_err("generating a key pair", e))?;
        self.key(label)
    }

    /// The key pair labelled `label`.
    pub fn key(self: &Arc<Self>, label: &str) -> Result<Pkcs11Key, PkiError> {
        let session = self.session()?;
        let found = session
            .find_objects(&[Attribute::Class(ObjectClass::PUBLIC_KEY), Attribute::Label(label.as_bytes().to_vec())])
            .map_err(|e| hsm_err("finding the public key", e))?;
        let handle = *found.first().ok_or_else(|| PkiError::Hsm(format!("no key labelled '{label}'")))?;
        let attrs = session
            .get_attributes(handle, &[AttributeType::EcPoint, AttributeType::KeyType])
            .map_err(|e| hsm_err("reading the public key", e))?;
        let mut point = None;
        for a in attrs {
            match a {
                Attribute::EcPoint(p) => point = Some(p),
                Attribute::KeyType(t) if t != KeyType::EC => {
                    return Err(PkiError::Hsm(format!("key '{label}' is not an EC key")));
                }
                _ => {}
            }
        }
        // CKA_EC_POINT is the uncompressed point wrapped in an OCTET STRING.
        let wrapped = point.ok_or_else(|| PkiError::Hsm("the token gave no EC point".into()))?;
        let raw = match OctetStringRef::from_der(&wrapped) {
            Ok(point) => point.as_bytes().to_vec(),
            Err(_) => wrapped,
        };
        if raw.len() != 65 || raw[0] != 4 {
            return Err(PkiError::Hsm("the EC point is not an uncompressed P-256 point".into()));
        }
        Ok(Pkcs11Key { token: self.clone(), label: label.to_owned(), public_point: raw })
    }
}

/// A P-256 private key that stays in the token; signs for rcgen (certificates, CRLs).
#[derive(Clone)]
pub struct Pkcs11Key {
    token: Arc<Pkcs11Token>,
    label: String,
    public_point: Vec<u8>,
}

impl std::fmt::Debug for Pkcs11Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pkcs11Key").field("label", &self.label).finish_non_exhaustive()
    }
}

impl Pkcs11Key {
    pub fn label(&self) -> &str {
        &self.label
    }
}

impl PublicKeyData for Pkcs11Key {
    fn der_bytes(&self) -> &[u8] {
        &self.public_point
    }

    fn algorithm(&self) -> &'static SignatureAlgorithm {
        &PKCS_ECDSA_P256_SHA256
    }
}

impl SigningKey for Pkcs11Key {
    /// ECDSA P-256 over SHA-256 (hashed here, signed in the token), DER-encoded.
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        let fail = |_| rcgen::Error::RemoteKeyError;
        let session = self.token.session().map_err(fail)?;
        let found = session
            .find_objects(&[
                Attribute::Class(ObjectClass::PRIVATE_KEY),
                Attribute::Label(self.label.as_bytes().to_vec()),
            ])
            .map_err(|_| rcgen::Error::RemoteKeyError)?;
        let key = *found.first().ok_or(rcgen::Error::RemoteKeyError)?;
        let hash = digest::digest(&digest::SHA256, msg);
        let raw = session.sign(&Mechanism::Ecdsa, key, hash.as_ref()).map_err(|_| rcgen::Error::RemoteKeyError)?;
        if raw.len() != 64 {
            return Err(rcgen::Error::RemoteKeyError);
        }
        ecdsa_der(&raw[..32], &raw[32..]).map_err(|_| rcgen::Error::RemoteKeyError)
    }
}

/// ECDSA-Sig-Value ::= SEQUENCE { r INTEGER, s INTEGER } (RFC 3279 §2.2.3).
#[derive(Sequence)]
struct EcdsaSigValue<'a> {
    r: UintRef<'a>,
    s: UintRef<'a>,
}

/// The DER signature from the token's fixed-size `r || s` (PKCS#11 CKM_ECDSA).
fn ecdsa_der(r: &[u8], s: &[u8]) -> der::Result<Vec<u8>> {
    EcdsaSigValue { r: UintRef::new(r)?, s: UintRef::new(s)? }.to_der()
}

#[cfg(test)]
mod tests {
    #[test]
    fn ecdsa_signature_encoding() {
        let r = [0u8; 32];
        let mut s = [0u8; 32];
        s[0] = 0x80;
        let d = super::ecdsa_der(&r, &s).unwrap();
        // r = 0 -> INTEGER 00; s has the top bit set -> a leading 00.
        assert_eq!(&d[..5], &[0x30, 0x26, 0x02, 0x01, 0x00]);
        assert_eq!(d.len(), 2 + 3 + 35);
        assert_eq!(&d[5..8], &[0x02, 0x21, 0x00]);
    }
}
