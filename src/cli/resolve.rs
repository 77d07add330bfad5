//! Turning a `--model` argument into a file: a manifest name, a path, or the default of its kind.

use std::path::PathBuf;

use anyhow::Context;
use switchboard_models::{Manifest, ModelKind, ModelStore};

/// `arg` may be a model name from the manifest or a path to a model file; `None` is the kind's default.
/// A missing or corrupt file is an error that names the command that fetches it.
pub fn model_path(kind: ModelKind, arg: Option<&str>) -> anyhow::Result<PathBuf> {
    let manifest = Manifest::bundled().context("reading the bundled model manifest")?;
    let entry = match arg {
        Some(a) => match manifest.get(a) {
            Some(entry) => entry,
            None => {
                let path = PathBuf::from(a);
                anyhow::ensure!(
                    path.is_file(),
                    "{a:?} is neither a model name (see `switchboard models list`) nor an existing file"
                );
                return Ok(path);
            }
        },
        None => manifest
            .default_for(kind)
            .with_context(|| format!("the manifest names no default {kind:?} model"))?,
    };
    anyhow::ensure!(entry.kind == kind, "model {} is not a {kind:?} model", entry.name);
    let store = ModelStore::discover().context("finding the models directory")?;
    Ok(store.locate(entry)?)
}
