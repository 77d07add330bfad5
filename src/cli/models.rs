//! `switchboard models …`: list, fetch, verify and locate the model files named in
//! `models/manifest.toml`. The work is in the `switchboard-models` crate; this is the command line.

use anyhow::Context;
use switchboard_models::{FetchOptions, Manifest, ModelEntry, ModelError, ModelKind, ModelStore, Status};

#[derive(Debug, clap::Subcommand)]
pub enum ModelsCommand {
    /// List the models in the manifest and whether each is present.
    List,
    /// Download, assemble, convert and verify model files (skipped when already present and verified).
    Fetch {
        /// Models to fetch; none means the default speech-to-text and the default language model.
        names: Vec<String>,
        /// Fetch every model in the manifest.
        #[arg(long, conflicts_with = "names")]
        all: bool,
        /// Re-make the files even if they are present and verified.
        #[arg(long)]
        force: bool,
        /// No progress output.
        #[arg(long, short)]
        quiet: bool,
    },
    /// Hash model files completely and compare with the manifest (no names: every present model).
    Verify { names: Vec<String> },
    /// Print the path of a model's file, after checking it is present and intact (for scripts).
    Path { name: String },
}

pub fn run(cmd: ModelsCommand) -> anyhow::Result<()> {
    let manifest = Manifest::bundled().context("reading the bundled model manifest")?;
    let store = ModelStore::discover().context("finding the models directory")?;
    match cmd {
        ModelsCommand::List => list(manifest, &store),
        ModelsCommand::Fetch {
            names,
            all,
            force,
            quiet,
        } => {
            let entries = if all {
                manifest.models().iter().collect()
            } else if names.is_empty() {
                ModelKind::ALL
                    .iter()
                    .filter_map(|k| manifest.default_for(*k))
                    .collect()
            } else {
                by_names(manifest, &names)?
            };
            fetch(&store, &entries, &FetchOptions { force, quiet })
        }
        ModelsCommand::Verify { names } => {
            let entries = if names.is_empty() {
                let present: Vec<_> = manifest
                    .models()
                    .iter()
                    .filter(|e| store.status(e) != Status::Missing)
                    .collect();
                anyhow::ensure!(
                    !present.is_empty(),
                    "no model files in {}: run `switchboard models fetch`",
                    store.dir().display()
                );
                present
            } else {
                by_names(manifest, &names)?
            };
            verify(&store, &entries)
        }
        ModelsCommand::Path { name } => {
            let entry = manifest.entry(&name)?;
            let path = store.locate(entry)?;
            println!("{}", path.display());
            Ok(())
        }
    }
}

fn by_names<'m>(manifest: &'m Manifest, names: &[String]) -> anyhow::Result<Vec<&'m ModelEntry>> {
    Ok(names
        .iter()
        .map(|n| manifest.entry(n))
        .collect::<Result<_, _>>()?)
}

fn list(manifest: &Manifest, store: &ModelStore) -> anyhow::Result<()> {
    println!(
        "{:<18} {:<8} {:<8} {:>9}  {:<11} STATUS",
        "NAME", "KIND", "DEFAULT", "SIZE", "LICENSE"
    );
    for e in manifest.models() {
        let status = match store.status(e) {
            Status::Verified => "verified".to_owned(),
            Status::Unverified => "present (not yet verified)".to_owned(),
            Status::Missing => "missing".to_owned(),
            Status::WrongSize { actual } => format!("corrupt ({actual} bytes)"),
        };
        println!(
            "{:<18} {:<8} {:<8} {:>9}  {:<11} {status}",
            e.name,
            e.kind.to_string(),
            if e.default { "yes" } else { "" },
            human_size(e.size),
            e.license
        );
    }
    println!("\nmodels directory: {}", store.dir().display());
    Ok(())
}

fn fetch(store: &ModelStore, entries: &[&ModelEntry], opts: &FetchOptions) -> anyhow::Result<()> {
    for entry in entries {
        if !opts.force && store.status(entry) == Status::Verified {
            if !opts.quiet {
                eprintln!("{}: already present and verified", entry.name);
            }
            continue;
        }
        if !opts.quiet {
            eprintln!("{}: fetching ({})", entry.name, human_size(entry.size));
        }
        let started = std::time::Instant::now();
        let path = store
            .fetch(entry, opts)
            .with_context(|| format!("fetching model {}", entry.name))?;
        if !opts.quiet {
            eprintln!(
                "{}: ready at {} ({:.1} s)",
                entry.name,
                path.display(),
                started.elapsed().as_secs_f64()
            );
        }
    }
    Ok(())
}

fn verify(store: &ModelStore, entries: &[&ModelEntry]) -> anyhow::Result<()> {
    let mut failed = 0;
    for entry in entries {
        match store.verify(entry) {
            Ok(path) => println!("ok       {}  {}", entry.name, path.display()),
            Err(e @ (ModelError::NotFound { .. } | ModelError::Corrupt { .. })) => {
                failed += 1;
                println!("FAILED   {}  {e}", entry.name);
            }
            Err(e) => return Err(e).with_context(|| format!("verifying {}", entry.name)),
        }
    }
    anyhow::ensure!(
        failed == 0,
        "{failed} of {} model files failed verification",
        entries.len()
    );
    Ok(())
}

fn human_size(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}
