//! Signed checkpoints: C2SP tlog-checkpoint bodies in C2SP signed notes,
//! signed with Ed25519.
//!
//! A checkpoint is `<origin>\n<tree size>\n<base64 root>\n`, then an empty
//! line, then one signature line per signer: `— <name> <base64(keyid || sig)>`
//! where `keyid` is the first 4 bytes of `SHA-256(name || 0x0A || 0x01 ||
//! pubkey)`. Keys use the signed-note text forms: the verifier key
//! `name+hexkeyid+base64(0x01 || pubkey)` and the private key
//! `PRIVATE+KEY+name+hexkeyid+base64(0x01 || seed)`.

use crate::merkle::Hash;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

/// Ed25519's algorithm byte in signed-note keys.
const ALG_ED25519: u8 = 0x01;
/// Longest accepted note, so a hostile file cannot exhaust memory.
pub const MAX_NOTE_BYTES: usize = 64 << 10;

/// Why a key or a note was refused.
#[derive(Debug, thiserror::Error)]
pub enum NoteError {
    /// The key text is malformed.
    #[error("bad key: {0}")]
    BadKey(String),
    /// The note text is malformed.
    #[error("bad checkpoint note: {0}")]
    BadNote(String),
    /// No signature by the expected key, or a signature that does not verify.
    #[error("checkpoint signature: {0}")]
    BadSignature(String),
}

fn key_id(name: &str, pubkey: &[u8; 32]) -> u32 {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update([b'\n', ALG_ED25519]);
    h.update(pubkey);
    let d = h.finalize();
    u32::from_be_bytes([d[0], d[1], d[2], d[3]])
}

fn check_name(name: &str) -> Result<(), NoteError> {
    if name.is_empty()
        || name.len() > 256
        || name.contains('+')
        || name.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(NoteError::BadKey(format!(
            "key name {name:?} must be non-empty, without spaces or '+'"
        )));
    }
    Ok(())
}

/// A checkpoint signer: name (the log's origin) and Ed25519 key.
pub struct Signer25519 {
    name: String,
    key: SigningKey,
}

impl Signer25519 {
    /// A fresh random key for `name`.
    pub fn generate(name: &str) -> Result<Self, NoteError> {
        check_name(name)?;
        let mut seed = [0u8; 32];
        getrandom::getrandom(&mut seed)
            .map_err(|e| NoteError::BadKey(format!("no randomness for a key: {e}")))?;
        Ok(Signer25519 {
            name: name.to_string(),
            key: SigningKey::from_bytes(&seed),
        })
    }

    /// Parses `PRIVATE+KEY+name+hexkeyid+base64(0x01||seed)`.
    pub fn from_private_text(text: &str) -> Result<Self, NoteError> {
        let text = text.trim();
        let rest = text
            .strip_prefix("PRIVATE+KEY+")
            .ok_or_else(|| NoteError::BadKey("private key must start with PRIVATE+KEY+".into()))?;
        let (name, id, key) = split_key(rest)?;
        if key.len() != 33 || key[0] != ALG_ED25519 {
            return Err(NoteError::BadKey(
                "private key is not an Ed25519 key".into(),
            ));
        }
        let mut seed = [0u8; 32];
        seed.copy_from_slice(&key[1..]);
        let signer = Signer25519 {
            name: name.to_string(),
            key: SigningKey::from_bytes(&seed),
        };
        if signer.key_id() != id {
            return Err(NoteError::BadKey(
                "private key's key ID does not match its name and key".into(),
            ));
        }
        Ok(signer)
    }

    /// The private key text (keep it secret: file mode 0600).
    pub fn private_text(&self) -> String {
        let mut k = vec![ALG_ED25519];
        k.extend_from_slice(&self.key.to_bytes());
        format!(
            "PRIVATE+KEY+{}+{:08x}+{}",
            self.name,
            self.key_id(),
            B64.encode(k)
        )
    }

    /// The key name (also used as the checkpoint origin).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The 4-byte key ID.
    pub fn key_id(&self) -> u32 {
        key_id(&self.name, self.key.verifying_key().as_bytes())
    }

    /// The public half.
    pub fn verifier(&self) -> Verifier25519 {
        Verifier25519 {
            name: self.name.clone(),
            key: self.key.verifying_key(),
        }
    }

    /// Signs a note text (which must end in a newline) and returns the note.
    pub fn sign_note(&self, text: &str) -> String {
        let sig = self.key.sign(text.as_bytes());
        let mut blob = self.key_id().to_be_bytes().to_vec();
        blob.extend_from_slice(&sig.to_bytes());
        format!("{text}\n\u{2014} {} {}\n", self.name, B64.encode(blob))
    }

    /// Signs a checkpoint for a tree.
    pub fn sign_checkpoint(&self, size: u64, root: &Hash) -> String {
        self.sign_note(&checkpoint_body(&self.name, size, root))
    }
}

/// A checkpoint verifier key.
#[derive(Clone, Debug)]
pub struct Verifier25519 {
    name: String,
    key: VerifyingKey,
}

fn split_key(rest: &str) -> Result<(&str, u32, Vec<u8>), NoteError> {
    let mut parts = rest.splitn(3, '+');
    let name = parts.next().unwrap_or_default();
    let id_hex = parts
        .next()
        .ok_or_else(|| NoteError::BadKey("missing key ID".into()))?;
    let key_b64 = parts
        .next()
        .ok_or_else(|| NoteError::BadKey("missing key material".into()))?;
    check_name(name)?;
    if id_hex.len() != 8 {
        return Err(NoteError::BadKey(format!(
            "key ID {id_hex:?} must be 8 hex digits"
        )));
    }
    let id = u32::from_str_radix(id_hex, 16)
        .map_err(|_| NoteError::BadKey(format!("key ID {id_hex:?} is not hex")))?;
    let key = B64
        .decode(key_b64)
        .map_err(|e| NoteError::BadKey(format!("key material is not base64: {e}")))?;
    Ok((name, id, key))
}

impl Verifier25519 {
    /// Parses the verifier key form `name+hexkeyid+base64(0x01||pubkey)`.
    pub fn from_text(text: &str) -> Result<Self, NoteError> {
        let (name, id, key) = split_key(text.trim())?;
        if key.len() != 33 || key[0] != ALG_ED25519 {
            return Err(NoteError::BadKey(
                "verifier key is not an Ed25519 key (want 0x01 || 32 bytes)".into(),
            ));
        }
        let mut pk = [0u8; 32];
        pk.copy_from_slice(&key[1..]);
        let key = VerifyingKey::from_bytes(&pk)
            .map_err(|e| NoteError::BadKey(format!("invalid Ed25519 public key: {e}")))?;
        let v = Verifier25519 {
            name: name.to_string(),
            key,
        };
        if v.key_id() != id {
            return Err(NoteError::BadKey(
                "verifier key's ID does not match its name and key".into(),
            ));
        }
        Ok(v)
    }

    /// The verifier key text.
    pub fn text(&self) -> String {
        let mut k = vec![ALG_ED25519];
        k.extend_from_slice(self.key.as_bytes());
        format!("{}+{:08x}+{}", self.name, self.key_id(), B64.encode(k))
    }

    /// The key name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The 4-byte key ID.
    pub fn key_id(&self) -> u32 {
        key_id(&self.name, self.key.as_bytes())
    }

    /// Verifies a signed note and returns its text (the signed part).
    pub fn verify_note<'a>(&self, note: &'a str) -> Result<&'a str, NoteError> {
        if note.len() > MAX_NOTE_BYTES {
            return Err(NoteError::BadNote("note is too large".into()));
        }
        let split = note
            .rfind("\n\n")
            .ok_or_else(|| NoteError::BadNote("no blank line before the signatures".into()))?;
        let text = &note[..split + 1];
        let sigs = &note[split + 2..];
        let mut seen_ours = false;
        for line in sigs.lines() {
            let rest = line.strip_prefix("\u{2014} ").ok_or_else(|| {
                NoteError::BadNote(format!(
                    "signature line {line:?} must start with '\u{2014} '"
                ))
            })?;
            let (name, b64) = rest
                .split_once(' ')
                .ok_or_else(|| NoteError::BadNote(format!("malformed signature line {line:?}")))?;
            let blob = B64
                .decode(b64)
                .map_err(|_| NoteError::BadNote(format!("signature of {name} is not base64")))?;
            if blob.len() < 4 {
                return Err(NoteError::BadNote(format!(
                    "signature of {name} is too short"
                )));
            }
            let id = u32::from_be_bytes([blob[0], blob[1], blob[2], blob[3]]);
            if name != self.name || id != self.key_id() {
                continue;
            }
            seen_ours = true;
            let sig: [u8; 64] = blob[4..].try_into().map_err(|_| {
                NoteError::BadSignature(format!("signature of {name} is not 64 bytes"))
            })?;
            let sig = ed25519_dalek::Signature::from_bytes(&sig);
            self.key
                .verify_strict(text.as_bytes(), &sig)
                .map_err(|_| {
                    NoteError::BadSignature(format!(
                        "signature by {} ({:08x}) does not verify: the note was altered or signed by another key",
                        self.name,
                        self.key_id()
                    ))
                })?;
        }
        if !seen_ours {
            return Err(NoteError::BadSignature(format!(
                "no signature by key {}+{:08x}",
                self.name,
                self.key_id()
            )));
        }
        Ok(text)
    }
}

/// The checkpoint body: origin, size, base64 root, each on its own line.
pub fn checkpoint_body(origin: &str, size: u64, root: &Hash) -> String {
    format!("{origin}\n{size}\n{}\n", B64.encode(root))
}

/// A checkpoint's parsed body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    /// The log's origin line.
    pub origin: String,
    /// Tree size.
    pub size: u64,
    /// Root hash.
    pub root: Hash,
}

impl Checkpoint {
    /// Parses a checkpoint body (the signed text, or a whole note: only the
    /// first three lines are read).
    pub fn parse(text: &str) -> Result<Self, NoteError> {
        let mut lines = text.split('\n');
        let origin = lines
            .next()
            .filter(|o| !o.is_empty())
            .ok_or_else(|| NoteError::BadNote("missing origin line".into()))?;
        let size = lines
            .next()
            .and_then(|s| {
                if s.is_empty() || (s.len() > 1 && s.starts_with('0')) {
                    None
                } else {
                    s.parse::<u64>().ok()
                }
            })
            .ok_or_else(|| NoteError::BadNote("tree size line is not a decimal number".into()))?;
        let root_b64 = lines
            .next()
            .ok_or_else(|| NoteError::BadNote("missing root hash line".into()))?;
        let root: Hash = B64
            .decode(root_b64)
            .ok()
            .and_then(|v| v.try_into().ok())
            .ok_or_else(|| NoteError::BadNote("root hash is not 32 bytes of base64".into()))?;
        Ok(Checkpoint {
            origin: origin.to_string(),
            size,
            root,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_verify_roundtrip_and_tamper() {
        let s = Signer25519::generate("example.com/log").unwrap();
        let note = s.sign_checkpoint(42, &[7u8; 32]);
        let v = Verifier25519::from_text(&s.verifier().text()).unwrap();
        let text = v.verify_note(&note).unwrap();
        let cp = Checkpoint::parse(text).unwrap();
        assert_eq!(cp.size, 42);
        assert_eq!(cp.root, [7u8; 32]);
        let forged = note.replace("\n42\n", "\n43\n");
        assert!(v.verify_note(&forged).is_err());
        let other = Signer25519::generate("example.com/log").unwrap();
        assert!(other.verifier().verify_note(&note).is_err());
        let again = Signer25519::from_private_text(&s.private_text()).unwrap();
        assert_eq!(again.verifier().text(), s.verifier().text());
    }

    #[test]
    fn key_id_matches_signed_note_definition() {
        // Recompute the ID by hand from the verifier text.
        let s = Signer25519::generate("kaudit.test").unwrap();
        let text = s.verifier().text();
        let parts: Vec<&str> = text.splitn(3, '+').collect();
        let key = B64.decode(parts[2]).unwrap();
        let mut h = Sha256::new();
        h.update(b"kaudit.test\n");
        h.update(&key);
        let d = h.finalize();
        assert_eq!(parts[1], hex::encode(&d[..4]));
    }
}
