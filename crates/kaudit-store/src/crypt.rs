//! Encryption at rest: each bundle payload sealed with ChaCha20-Poly1305
//! under a 256-bit key from a file, with a random 96-bit nonce per bundle and
//! the bundle's seq range bound as associated data.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use sha2::{Digest, Sha256};
use std::path::Path;

const NONCE: usize = 12;

/// Why encryption or decryption failed.
#[derive(Debug, thiserror::Error)]
pub enum CryptError {
    /// The key file is unusable.
    #[error("encryption key file {path}: {reason}")]
    KeyFile {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// Data is encrypted but no key was given.
    #[error("the store is encrypted: give the key (encryption.key_file / --encryption-key)")]
    KeyNeeded,
    /// The data was sealed under another key.
    #[error(
        "wrong encryption key: data was encrypted with key id {want}, the given key has id {got}"
    )]
    WrongKey {
        /// Id recorded with the data.
        want: String,
        /// Id of the key given.
        got: String,
    },
    /// Authentication failed: tampered ciphertext (or wrong key).
    #[error("decryption failed: the bundle was altered or sealed under another key")]
    Open,
    /// Randomness or sealing failed.
    #[error("encryption failed: {0}")]
    Seal(String),
}

/// A loaded data key.
#[derive(Clone)]
pub struct Cipher {
    aead: ChaCha20Poly1305,
    id: [u8; 8],
}

impl std::fmt::Debug for Cipher {
    /// Shows the key id only: key bytes never reach a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cipher")
            .field("id", &hex::encode(self.id))
            .finish()
    }
}

impl Cipher {
    /// Uses 32 key bytes.
    pub fn new(key: &[u8; 32]) -> Self {
        let d = Sha256::digest([b"kaudit-key-id\n".as_slice(), key].concat());
        let mut id = [0u8; 8];
        id.copy_from_slice(&d[..8]);
        Cipher {
            aead: ChaCha20Poly1305::new(Key::from_slice(key)),
            id,
        }
    }

    /// Loads a key file: 64 hex digits (whitespace ignored) or 32 raw bytes.
    pub fn load(path: &Path) -> Result<Self, CryptError> {
        let err = |reason: String| CryptError::KeyFile {
            path: path.display().to_string(),
            reason,
        };
        let meta = std::fs::metadata(path).map_err(|e| err(e.to_string()))?;
        if meta.len() > 4096 {
            return Err(err("larger than a key file can be".into()));
        }
        let bytes = std::fs::read(path).map_err(|e| err(e.to_string()))?;
        let text: String = String::from_utf8_lossy(&bytes)
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect();
        let key: [u8; 32] = if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
            hex::decode(&text)
                .map_err(|e| err(e.to_string()))?
                .try_into()
                .map_err(|_| err("want 32 bytes".into()))?
        } else if bytes.len() == 32 {
            bytes
                .as_slice()
                .try_into()
                .map_err(|_| err("want 32 bytes".into()))?
        } else {
            return Err(err("want 64 hex digits (or 32 raw bytes)".into()));
        };
        Ok(Cipher::new(&key))
    }

    /// A fresh random key as 64 hex digits.
    pub fn generate_hex() -> Result<String, CryptError> {
        let mut k = [0u8; 32];
        getrandom::getrandom(&mut k).map_err(|e| CryptError::Seal(e.to_string()))?;
        Ok(hex::encode(k))
    }

    /// Public identifier of the key (not secret), recorded in segment headers.
    pub fn id(&self) -> [u8; 8] {
        self.id
    }

    /// Checks that data sealed under key `want` can be opened with this key.
    pub fn check_id(&self, want: &[u8; 8]) -> Result<(), CryptError> {
        if &self.id != want {
            return Err(CryptError::WrongKey {
                want: hex::encode(want),
                got: hex::encode(self.id),
            });
        }
        Ok(())
    }

    /// nonce || ciphertext || tag.
    pub fn seal(&self, msg: &[u8], aad: &[u8]) -> Result<Vec<u8>, CryptError> {
        let mut nonce = [0u8; NONCE];
        getrandom::getrandom(&mut nonce).map_err(|e| CryptError::Seal(e.to_string()))?;
        let ct = self
            .aead
            .encrypt(Nonce::from_slice(&nonce), Payload { msg, aad })
            .map_err(|_| CryptError::Seal("AEAD encryption failed".into()))?;
        let mut out = Vec::with_capacity(NONCE + ct.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        Ok(out)
    }

    /// Opens what [`Cipher::seal`] made.
    pub fn open(&self, sealed: &[u8], aad: &[u8]) -> Result<Vec<u8>, CryptError> {
        if sealed.len() < NONCE + 16 {
            return Err(CryptError::Open);
        }
        self.aead
            .decrypt(
                Nonce::from_slice(&sealed[..NONCE]),
                Payload {
                    msg: &sealed[NONCE..],
                    aad,
                },
            )
            .map_err(|_| CryptError::Open)
    }

    /// Seals one line of a line-oriented file kept beside the store (alerts,
    /// quarantine): `enc1 <key id hex> <base64 of nonce, ciphertext, tag>`,
    /// with `purpose` (e.g. `kaudit alerts`) bound as associated data.
    pub fn seal_line(&self, plain: &[u8], purpose: &str) -> Result<String, CryptError> {
        use base64::Engine;
        let sealed = self.seal(plain, purpose.as_bytes())?;
        Ok(format!(
            "{SEALED_LINE_PREFIX}{} {}",
            hex::encode(self.id),
            base64::engine::general_purpose::STANDARD.encode(sealed)
        ))
    }

    /// Opens a line [`Cipher::seal_line`] made for the same `purpose`.
    pub fn open_line(&self, line: &str, purpose: &str) -> Result<Vec<u8>, CryptError> {
        use base64::Engine;
        let rest = line
            .trim_end()
            .strip_prefix(SEALED_LINE_PREFIX)
            .ok_or(CryptError::Open)?;
        let (id, b64) = rest.split_once(' ').ok_or(CryptError::Open)?;
        if id != hex::encode(self.id) {
            return Err(CryptError::WrongKey {
                want: id.chars().take(16).collect(),
                got: hex::encode(self.id),
            });
        }
        let sealed = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(|_| CryptError::Open)?;
        self.open(&sealed, purpose.as_bytes())
    }
}

/// How a line sealed by [`Cipher::seal_line`] starts (plain lines are JSON
/// objects and start with `{`).
pub const SEALED_LINE_PREFIX: &str = "enc1 ";
