//! Ed25519 keys for trail checkpoints: `exfilmon keygen`, loading, signing and checking.
//!
//! Keys are PEM files (PKCS#8 private, SPKI public) that OpenSSL reads too. The private key
//! is created mode 0600 and never overwritten; a key id (first 16 hex digits of the SHA-256
//! of the public key) names which key signed a checkpoint.

use std::fs::OpenOptions;
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey};
use ed25519_dalek::{Signature, Signer as _, SigningKey, Verifier as _, VerifyingKey};
use sha2::{Digest, Sha256};

use super::{Anchor, Checkpoint};

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read key {}: {source}", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{} is not an Ed25519 {what} key in PEM form (make one with `exfilmon keygen`)", path.display())]
    Format { path: PathBuf, what: &'static str },
    #[error("{} already exists; remove it first or choose another --out (a key is never overwritten)", path.display())]
    Exists { path: PathBuf },
    #[error("cannot write key {}: {source}", path.display())]
    Write { path: PathBuf, source: std::io::Error },
    #[error("no randomness from the operating system: {0}")]
    Random(String),
}

/// Signs checkpoints.
pub struct Signer {
    key: SigningKey,
    key_id: String,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Signer({})", self.key_id)
    }
}

impl Signer {
    pub fn load(path: &Path) -> Result<Signer, KeyError> {
        let text = std::fs::read_to_string(path).map_err(|source| KeyError::Read { path: path.to_owned(), source })?;
        let key = SigningKey::from_pkcs8_pem(&text)
            .map_err(|_| KeyError::Format { path: path.to_owned(), what: "private" })?;
        if std::fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o077 != 0) {
            tracing::warn!("signing key {} is readable by others: chmod 600 it", path.display());
        }
        Ok(Signer { key_id: key_id(&key.verifying_key()), key })
    }

    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    pub fn sign(&self, ts_us: i64, rows: i64, head: &str) -> Checkpoint {
        let sig = self.key.sign(Checkpoint::message(ts_us, rows, head).as_bytes());
        Checkpoint {
            ts_us,
            rows,
            head: head.to_owned(),
            key_id: self.key_id.clone(),
            signature: hex::encode(sig.to_bytes()),
        }
    }
}

impl Signer {
    /// Signs `a` (its message: [`Anchor::message`]).
    pub fn sign_anchor(&self, a: &mut Anchor) {
        a.key_id = Some(self.key_id.clone());
        a.signature = Some(hex::encode(self.key.sign(a.message().as_bytes()).to_bytes()));
    }
}

/// Whether `key` signed `a`; `false` for an unsigned one.
pub fn check_anchor(key: &VerifyingKey, a: &Anchor) -> bool {
    let Some(Ok(bytes)) = a.signature.as_deref().map(hex::decode) else {
        return false;
    };
    let Ok(sig) = Signature::from_slice(&bytes) else {
        return false;
    };
    key.verify(a.message().as_bytes(), &sig).is_ok()
}

pub fn load_public(path: &Path) -> Result<VerifyingKey, KeyError> {
    let text = std::fs::read_to_string(path).map_err(|source| KeyError::Read { path: path.to_owned(), source })?;
    VerifyingKey::from_public_key_pem(&text).map_err(|_| KeyError::Format { path: path.to_owned(), what: "public" })
}

pub fn key_id(key: &VerifyingKey) -> String {
    hex::encode(&Sha256::digest(key.as_bytes())[..8])
}

/// Whether `key` signed `c`.
pub fn check(key: &VerifyingKey, c: &Checkpoint) -> bool {
    let Ok(bytes) = hex::decode(&c.signature) else {
        return false;
    };
    let Ok(sig) = Signature::from_slice(&bytes) else {
        return false;
    };
    key.verify(Checkpoint::message(c.ts_us, c.rows, &c.head).as_bytes(), &sig).is_ok()
}

/// Writes a new key pair to `prefix.key` (0600) and `prefix.pub` (0644); returns their paths.
pub fn keygen(prefix: &Path) -> Result<(PathBuf, PathBuf, String), KeyError> {
    let with = |ext: &str| {
        let mut p = prefix.as_os_str().to_owned();
        p.push(ext);
        PathBuf::from(p)
    };
    let (private, public) = (with(".key"), with(".pub"));
    for p in [&private, &public] {
        if p.exists() {
            return Err(KeyError::Exists { path: p.clone() });
        }
    }
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| KeyError::Random(e.to_string()))?;
    let key = SigningKey::from_bytes(&seed);
    let pem = key.to_pkcs8_pem(Default::default()).map_err(|e| KeyError::Random(e.to_string()))?;
    let public_pem =
        key.verifying_key().to_public_key_pem(Default::default()).map_err(|e| KeyError::Random(e.to_string()))?;
    write_new(&private, pem.as_bytes(), 0o600)?;
    write_new(&public, public_pem.as_bytes(), 0o644)?;
    Ok((private, public, key_id(&key.verifying_key())))
}

fn write_new(path: &Path, data: &[u8], mode: u32) -> Result<(), KeyError> {
    let err = |source| KeyError::Write { path: path.to_owned(), source };
    let mut f = OpenOptions::new().write(true).create_new(true).mode(mode).open(path).map_err(err)?;
    f.write_all(data).and_then(|()| f.sync_all()).map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keygen_signs_and_checks_and_never_overwrites() {
        let dir = tempfile::tempdir().unwrap();
        let prefix = dir.path().join("trail");
        let (private, public, id) = keygen(&prefix).unwrap();
        assert_eq!(std::fs::metadata(&private).unwrap().permissions().mode() & 0o777, 0o600);
        let signer = Signer::load(&private).unwrap();
        assert_eq!(signer.key_id(), id);
        let vk = load_public(&public).unwrap();
        let c = signer.sign(1, 2, "ab");
        assert!(check(&vk, &c));
        assert!(!check(&vk, &Checkpoint { rows: 1, ..c.clone() }));
        assert!(!check(&vk, &Checkpoint { signature: "zz".into(), ..c }));
        assert!(matches!(keygen(&prefix), Err(KeyError::Exists { .. })));
        assert!(matches!(load_public(&private), Err(KeyError::Format { .. })));
    }
}
