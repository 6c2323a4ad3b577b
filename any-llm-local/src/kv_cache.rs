//! The KV cache: the keys and values of every position so far, per layer and key/value
//! head, in the number type [`KvCacheType`] names (f16, or Q8_0 blocks), each head's
//! positions contiguous so that attention streams through them.

use crate::arch::ModelConfig;
use crate::kernels::{self, KvRows};
use crate::quant::{GgmlType, Q8_0_BYTES};
use any_core::{Error, Result};

/// The number type the KV cache stores keys and values in.
///
/// `F16` is llama.cpp's default and what the reference tests compare against bit for bit.
/// `Q8_0` (blocks of 32 signed bytes with an f16 scale, as llama.cpp's `--cache-type-k q8_0
/// --cache-type-v q8_0`) holds the cache in 34 bytes per 32 values instead of 64: a long
/// context's decode step reads about half as much cache, for a small change in the numbers
/// (perplexity on the reference text within a few tenths of a percent of f16's; see the
/// book's chapter on the local backend).
///
/// ```
/// use any_llm_local::{KvCacheType, LocalModelOptions};
///
/// let kv: KvCacheType = "q8_0".parse()?;
/// assert_eq!(kv.row_bytes(64), 68); // two blocks of 32 values, 34 bytes each
/// let options = LocalModelOptions { kv_cache: kv, ..Default::default() };
/// // LocalModel::open_with("model.gguf", options)?
/// # let _ = options;
/// # Ok::<(), any_core::Error>(())
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum KvCacheType {
    /// IEEE half precision, 2 bytes a value.
    #[default]
    F16,
    /// 8-bit blocks of 32 values with an f16 scale, 1.0625 bytes a value.
    Q8_0,
}

impl KvCacheType {
    /// The name llama.cpp's `--cache-type-k` uses: `f16` or `q8_0`.
    pub fn as_str(self) -> &'static str {
        match self {
            KvCacheType::F16 => "f16",
            KvCacheType::Q8_0 => "q8_0",
        }
    }

    /// Bytes of one cached row of `head_dim` values (`head_dim` a multiple of 32 for Q8_0).
    pub fn row_bytes(self, head_dim: usize) -> usize {
        match self {
            KvCacheType::F16 => 2 * head_dim,
            KvCacheType::Q8_0 => head_dim / 32 * Q8_0_BYTES,
        }
    }
}

impl std::fmt::Display for KvCacheType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for KvCacheType {
    type Err = Error;

    /// `f16` or `q8_0` (case-insensitive).
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "f16" => Ok(KvCacheType::F16),
            "q8_0" => Ok(KvCacheType::Q8_0),
            _ => Err(Error::InvalidRequest(format!(
                "unknown KV cache type {s:?}: expected f16 or q8_0"
            ))),
        }
    }
}

/// One layer's keys or values, `[kv_head][position][head_dim]`.
#[derive(Debug)]
enum Plane {
    F16(Vec<u16>),
    Q8_0(Vec<u8>),
}

/// Keys and values of every position so far, per layer and key/value head, each head's
/// positions contiguous so attention streams through them.
#[derive(Debug)]
pub(crate) struct KvCache {
    k: Vec<Plane>,
    v: Vec<Plane>,
    head_dim: usize,
    /// The number type of the rows.
    pub(crate) ty: KvCacheType,
    /// Positions filled.
    pub(crate) len: usize,
    /// Positions the cache holds (the context window).
    pub(crate) capacity: usize,
}

impl KvCache {
    /// A cache for `capacity` positions. Pages are touched only as positions fill.
    ///
    /// # Errors
    /// [`Error::InvalidRequest`] for Q8_0 with a head width that is not a multiple of 32.
    pub(crate) fn new(cfg: &ModelConfig, capacity: usize, ty: KvCacheType) -> Result<Self> {
        if ty == KvCacheType::Q8_0 && !cfg.head_dim.is_multiple_of(32) {
            return Err(Error::InvalidRequest(format!(
                "a Q8_0 KV cache needs a head width that is a multiple of 32; this model's is {}",
                cfg.head_dim
            )));
        }
        check_size(cfg, capacity, ty)?;
        let rows = cfg.n_head_kv * capacity;
        let plane = || match ty {
            KvCacheType::F16 => Plane::F16(vec![0; rows * cfg.head_dim]),
            KvCacheType::Q8_0 => Plane::Q8_0(vec![0; rows * ty.row_bytes(cfg.head_dim)]),
        };
        Ok(KvCache {
            k: (0..cfg.n_layer).map(|_| plane()).collect(),
            v: (0..cfg.n_layer).map(|_| plane()).collect(),
            head_dim: cfg.head_dim,
            ty,
            len: 0,
            capacity,
        })
    }

    /// Forgets every position from `len` on.
    pub(crate) fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }

    /// Stores the keys `k` and values `v` (rows of `kv_dim` values) of the tokens at
    /// positions `pos0..` in `layer`.
    pub(crate) fn store(
        &mut self,
        layer: usize,
        pos0: usize,
        k: &[f32],
        v: &[f32],
        cfg: &ModelConfig,
    ) {
        let hd = self.head_dim;
        let kvd = cfg.kv_dim();
        let rb = self.ty.row_bytes(hd);
        for (t, (kr, vr)) in k.chunks_exact(kvd).zip(v.chunks_exact(kvd)).enumerate() {
            for g in 0..cfg.n_head_kv {
                let row = g * self.capacity + pos0 + t;
                let (ks, vs) = (&kr[g * hd..(g + 1) * hd], &vr[g * hd..(g + 1) * hd]);
                for (plane, x) in [(&mut self.k[layer], ks), (&mut self.v[layer], vs)] {
                    match plane {
                        Plane::F16(p) => kernels::f32_to_f16(x, &mut p[row * hd..(row + 1) * hd]),
                        Plane::Q8_0(p) => kernels::quantize_activations(
                            GgmlType::Q8_0,
                            x,
                            &mut p[row * rb..(row + 1) * rb],
                        ),
                    }
                }
            }
        }
    }

    /// The first `len` rows of key/value head `head` in `plane`.
    fn rows<'a>(&self, plane: &'a Plane, head: usize, len: usize) -> KvRows<'a> {
        let first = head * self.capacity;
        KvRows::range(
            match plane {
                Plane::F16(p) => KvRows::F16(p),
                Plane::Q8_0(p) => KvRows::Q8_0(p),
            },
            first,
            len,
            self.head_dim,
        )
    }

    /// The first `len` keys of key/value head `head` in `layer`.
    pub(crate) fn keys(&self, layer: usize, head: usize, len: usize) -> KvRows<'_> {
        self.rows(&self.k[layer], head, len)
    }

    /// The first `len` values of key/value head `head` in `layer`.
    pub(crate) fn values(&self, layer: usize, head: usize, len: usize) -> KvRows<'_> {
        self.rows(&self.v[layer], head, len)
    }
}

/// Refuses a cache that cannot be allocated, before trying: one whose size overflows, or
/// that is larger than the memory the machine has available (Linux's `MemAvailable`), so
/// that `--context 1000000000` is an error naming the sizes, not an abort.
fn check_size(cfg: &ModelConfig, capacity: usize, ty: KvCacheType) -> Result<()> {
    let bytes = capacity
        .checked_mul(cfg.n_head_kv)
        .and_then(|rows| rows.checked_mul(ty.row_bytes(cfg.head_dim)))
        .and_then(|plane| plane.checked_mul(2 * cfg.n_layer))
        .and_then(|b| u64::try_from(b).ok());
    let mib = |b: u64| b / (1 << 20);
    match (bytes, available_memory()) {
        (None, _) => Err(Error::InvalidRequest(format!(
            "a context of {capacity} tokens needs a KV cache larger than this machine can \
             address; ask for a smaller context"
        ))),
        (Some(bytes), Some(available)) if bytes > available => Err(Error::InvalidRequest(format!(
            "a context of {capacity} tokens needs a {ty} KV cache of {} MiB, and this \
                 machine has {} MiB available; ask for a smaller context",
            mib(bytes),
            mib(available)
        ))),
        _ => Ok(()),
    }
}

/// The memory the kernel says is available for new allocations, where it says (Linux).
fn available_memory() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::tests::config;

    #[test]
    fn kv_cache_types_parse_and_check_the_head_width() {
        assert_eq!("Q8_0".parse::<KvCacheType>().unwrap(), KvCacheType::Q8_0);
        assert_eq!("f16".parse::<KvCacheType>().unwrap(), KvCacheType::F16);
        let e = "q4".parse::<KvCacheType>().unwrap_err().to_string();
        assert!(e.contains("q4") && e.contains("q8_0"), "{e}");
        let mut cfg = config();
        cfg.head_dim = 48;
        let e = KvCache::new(&cfg, 8, KvCacheType::Q8_0)
            .unwrap_err()
            .to_string();
        assert!(e.contains("multiple of 32") && e.contains("48"), "{e}");
        assert!(KvCache::new(&cfg, 8, KvCacheType::F16).is_ok());
    }
}
