//! The checkpoint keys: the Ed25519 signing key (made on first writable
//! open unless one is configured) and the public verifier key readers use.

use super::files::{read_small, write_atomic};
use super::{paths, StoreOptions};
use crate::note::{Signer25519, Verifier25519};
use crate::{StoreError, StoreResult};
use std::path::Path;

/// Loads (or, when allowed, creates) the signing key of a store.
pub fn load_signer(
    dir: &Path,
    opts: &StoreOptions,
    create: bool,
) -> StoreResult<Option<Signer25519>> {
    let path = opts
        .signing_key
        .clone()
        .unwrap_or_else(|| paths::signing_key(dir));
    if path.exists() {
        let text = read_small(&path, 4096)?;
        let text = String::from_utf8(text)
            .map_err(|_| StoreError::Key(format!("{}: not UTF-8", path.display())))?;
        return Signer25519::from_private_text(&text)
            .map(Some)
            .map_err(|source| StoreError::KeyFile { path, source });
    }
    if !create {
        return Ok(None);
    }
    if opts.signing_key.is_some() {
        return Err(StoreError::Key(format!(
            "signing key {} does not exist (make one with `kaudit keygen`)",
            path.display()
        )));
    }
    let origin = match &opts.origin {
        Some(o) => o.clone(),
        None => {
            let mut id = [0u8; 8];
            getrandom::getrandom(&mut id).map_err(|e| StoreError::KeyGen(Box::new(e)))?;
            format!("kaudit.local/{}", hex::encode(id))
        }
    };
    let signer = Signer25519::generate(&origin).map_err(|e| StoreError::KeyGen(Box::new(e)))?;
    write_atomic(
        &path,
        format!("{}\n", signer.private_text()).as_bytes(),
        0o600,
    )?;
    Ok(Some(signer))
}

/// Loads the verifier key of a store: from its signing key, else `checkpoint.pub`.
pub fn load_verifier(dir: &Path, opts: &StoreOptions) -> StoreResult<Verifier25519> {
    if let Some(s) = load_signer(dir, opts, false)? {
        return Ok(s.verifier());
    }
    let p = paths::verifier_key(dir);
    let text = read_small(&p, 4096).map_err(|_| {
        StoreError::Key(format!(
            "no checkpoint key in {} (neither checkpoint.key nor checkpoint.pub)",
            dir.display()
        ))
    })?;
    Verifier25519::from_text(&String::from_utf8_lossy(&text))
        .map_err(|source| StoreError::KeyFile { path: p, source })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error;

    #[test]
    fn a_bad_key_file_names_the_file_and_keeps_the_cause() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(paths::signing_key(dir.path()), "not a key\n").unwrap();
        let Err(err) = load_signer(dir.path(), &StoreOptions::default(), false) else {
            panic!("a garbage key file was accepted");
        };
        assert!(matches!(err, StoreError::KeyFile { .. }), "{err:?}");
        assert!(err.to_string().contains("checkpoint.key"), "{err}");
        let source = err.source().expect("the key error is kept");
        assert!(source.is::<crate::note::NoteError>(), "{source:?}");
    }

    #[test]
    fn a_missing_key_file_is_an_io_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let opts = StoreOptions {
            signing_key: Some(dir.path().join("missing.key")),
            ..Default::default()
        };
        // A configured key that does not exist is refused by name (it is never
        // generated); one that cannot be read is an io error naming it.
        let Err(err) = load_signer(dir.path(), &opts, true) else {
            panic!("a missing configured key was accepted");
        };
        assert!(matches!(err, StoreError::Key(_)), "{err:?}");
        assert!(err.to_string().contains("missing.key"), "{err}");
        std::fs::create_dir(dir.path().join("missing.key")).unwrap();
        let Err(err) = load_signer(dir.path(), &opts, false) else {
            panic!("an unreadable key was accepted");
        };
        assert!(matches!(err, StoreError::Io { .. }), "{err:?}");
        assert!(err.to_string().contains("missing.key"), "{err}");
        assert!(err.source().unwrap().is::<std::io::Error>());
    }
}
