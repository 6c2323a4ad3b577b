//! Weights repacked at load into groups of [`PACK_ROWS`] interleaved rows, for the kernels
//! that multiply eight rows at once with one instruction per four values.
//!
//! A file's Q4_K row keeps each super-block's 256 quants, scales and minimums together, so a
//! kernel computing one row's dot product must sum its 32-bit lanes horizontally and apply
//! the super-block's scales one output at a time. In the packed layout the same super-block
//! of eight consecutive rows sits together, four quants of each row side by side: one 32-byte
//! load feeds a row to each 32-bit lane, one broadcast of four activation bytes serves all
//! eight rows, and every scale, sum and float of the epilogue is an 8-lane vector of rows.
//! The integers are the same as the row-at-a-time kernels', and each output's floats are the
//! scalar reference's expression in its order, so packed and unpacked results are bit for
//! bit the same.
//!
//! Packing costs one pass over the weights at load (tens of milliseconds per hundred MiB)
//! and 32 bytes per eight super-blocks (2.8% of a Q4_K matrix); the file's pages of a packed
//! matrix are released afterwards, so the model's memory does not grow.

use crate::quant::{
    GgmlType, Q4_0_BYTES, Q4_K_BYTES, Q5_K_BYTES, Q6_K_BYTES, Q8_0_BYTES, QK, QK_K, scale_min_k4,
};

/// A packed matrix's bytes: anonymous memory the kernel may back with huge pages, so that
/// allocating hundreds of MiB at load costs hundreds of page faults, not hundreds of
/// thousands.
#[derive(Debug)]
pub(crate) struct Packed(memmap2::MmapMut);

impl Packed {
    /// `len` zero bytes (`None` if the memory cannot be mapped).
    fn zeroed(len: usize) -> Option<Self> {
        let map = memmap2::MmapMut::map_anon(len).ok()?;
        #[cfg(target_os = "linux")]
        {
            // Only advice: without transparent huge pages the map works the same.
            let _ = map.advise(memmap2::Advice::HugePage);
        }
        Some(Packed(map))
    }
}

impl std::ops::Deref for Packed {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.0
    }
}

impl std::ops::DerefMut for Packed {
    fn deref_mut(&mut self) -> &mut [u8] {
        &mut self.0
    }
}

/// Weight rows per packed group.
pub(crate) const PACK_ROWS: usize = 8;

/// Tokens per call of a [`PackedFn`] at most.
pub(crate) const PACK_TOKENS: usize = 4;

/// Bytes of one packed Q4_K group: one super-block of each of [`PACK_ROWS`] rows.
///
/// | bytes | what |
/// |---|---|
/// | 0..16 | each row's `d` (f16) |
/// | 16..32 | each row's `dmin` (f16) |
/// | 32..96 | the 6-bit scales, sub-block major: byte `8j + r` is row `r`'s scale `j` |
/// | 96..160 | the 6-bit minimums in pairs: bytes `16p + 2r` and `+ 1` are row `r`'s minimums `2p` and `2p + 1` |
/// | 160..1184 | the quants: 32 chunks of 32 bytes; chunk `8i + k` holds, at bytes `4r..4r + 4`, row `r`'s quant bytes `32i + 4k..32i + 4k + 4` (low nibbles: values `64i + 4k..`, high nibbles: values `64i + 32 + 4k..`) |
pub(crate) const Q4_K_X8_BYTES: usize = 160 + PACK_ROWS * 128;

/// Bytes of one packed Q5_K group: a packed Q4_K group of the low four bits, then the fifth
/// bits: 8 chunks of 32 bytes; chunk `k` holds, at bytes `4r..4r + 4`, row `r`'s `qh` bytes
/// `4k..4k + 4`, whose bit `2i` is the fifth bit of quant chunk `8i + k`'s low nibble and bit
/// `2i + 1` that of its high nibble.
pub(crate) const Q5_K_X8_BYTES: usize = Q4_K_X8_BYTES + PACK_ROWS * 32;

/// Offset of a packed Q5_K group's fifth bits.
pub(crate) const Q5_K_X8_HIGH: usize = Q4_K_X8_BYTES;

/// Offsets of the packed Q4_K (and Q5_K) group's parts.
pub(crate) const Q4_K_X8_D: usize = 0;
pub(crate) const Q4_K_X8_DMIN: usize = 16;
pub(crate) const Q4_K_X8_SCALES: usize = 32;
pub(crate) const Q4_K_X8_MINS: usize = 96;
pub(crate) const Q4_K_X8_QUANTS: usize = 160;

/// Bytes of one packed Q6_K group: one super-block of each of [`PACK_ROWS`] rows, the same
/// size as the eight blocks.
///
/// | bytes | what |
/// |---|---|
/// | 0..16 | each row's `d` (f16) |
/// | 16..144 | the 8-bit scales, sub-block major: byte `8j + r` is row `r`'s scale `j` |
/// | 144..1168 | the low four bits of each 6-bit quant, in chunks laid out as Q4_K's |
/// | 1168..1680 | their top two bits: 16 chunks of 32 bytes; chunk `4i + m` holds, at byte `4r + b`, the top bits of the four quants that quant chunks `8i + 2m` and `8i + 2m + 1` put at byte `4r + b` (low nibble, high nibble, low nibble, high nibble, from bit 0 up) |
pub(crate) const Q6_K_X8_BYTES: usize = 144 + PACK_ROWS * 192;

/// Offsets of the packed Q6_K group's parts.
pub(crate) const Q6_K_X8_D: usize = 0;
pub(crate) const Q6_K_X8_SCALES: usize = 16;
pub(crate) const Q6_K_X8_LOW: usize = 144;
pub(crate) const Q6_K_X8_HIGH: usize = 1168;

/// Bytes of one packed Q8_0 group: one 32-value block of each of [`PACK_ROWS`] rows, the same
/// size as the eight blocks.
///
/// | bytes | what |
/// |---|---|
/// | 0..16 | each row's `d` (f16) |
/// | 16..272 | each row's 32 quants plus 128 (unsigned), row `r`'s at `16 + 32r` |
pub(crate) const Q8_0_X8_BYTES: usize = 16 + PACK_ROWS * 32;

/// Bytes of one packed Q4_0 group: one block of each of [`PACK_ROWS`] rows, the same size as
/// the eight blocks: each row's `d` (f16) at `2r`, then each row's 16 quant bytes as the file
/// has them at `16 + 16r` (so rows `2p` and `2p + 1` are one 32-byte load).
pub(crate) const Q4_0_X8_BYTES: usize = 16 + PACK_ROWS * 16;

/// `out[t * PACK_ROWS + r]` = row `r` of a packed group by activation row `t`, over `n`
/// values, for the `nt` (1 to [`PACK_TOKENS`]) activation rows `a` holds (in the weight
/// type's `vec_dot_type`). The slices must have exactly those sizes.
pub(crate) type PackedFn = fn(&[u8], &[u8], usize, usize, &mut [f32; PACK_ROWS * PACK_TOKENS]);

/// The packed kernel for `ty` on this CPU, where there is one: weights of that type are worth
/// packing exactly when this is `Some`.
pub(crate) fn packed_fn(ty: GgmlType) -> Option<PackedFn> {
    #[cfg(target_arch = "x86_64")]
    if let Some(f) = super::x86::packed_fn(ty) {
        return Some(f);
    }
    let _ = ty;
    None
}

/// Bytes per row of a packed matrix of `cols` values of `ty` (a group's bytes over
/// [`PACK_ROWS`]), where `ty` has a packed layout.
pub(crate) fn packed_row_bytes(ty: GgmlType, cols: usize) -> Option<usize> {
    match ty {
        GgmlType::Q8_0 if cols.is_multiple_of(QK) => Some(cols / QK * Q8_0_X8_BYTES / PACK_ROWS),
        GgmlType::Q4_0 if cols.is_multiple_of(QK) => Some(cols / QK * Q4_0_X8_BYTES / PACK_ROWS),
        GgmlType::Q4_K if cols.is_multiple_of(QK_K) => {
            Some(cols / QK_K * Q4_K_X8_BYTES / PACK_ROWS)
        }
        GgmlType::Q5_K if cols.is_multiple_of(QK_K) => {
            Some(cols / QK_K * Q5_K_X8_BYTES / PACK_ROWS)
        }
        GgmlType::Q6_K if cols.is_multiple_of(QK_K) => {
            Some(cols / QK_K * Q6_K_X8_BYTES / PACK_ROWS)
        }
        _ => None,
    }
}

/// `rows` rows of `cols` values of `ty`, as they sit in a GGUF file, in the packed layout:
/// `None` where this CPU has no packed kernel for `ty` or the shape does not pack (rows not a
/// multiple of [`PACK_ROWS`]).
pub(crate) fn pack(ty: GgmlType, data: &[u8], rows: usize, cols: usize) -> Option<Packed> {
    packed_fn(ty)?;
    pack_layout(ty, data, rows, cols)
}

/// Puts row `r`'s block (as the file has it) into its places in a packed group.
type PackRow = fn(&[u8], usize, &mut [u8]);

/// [`pack`] whether or not this CPU has the kernel (for tests).
pub(crate) fn pack_layout(ty: GgmlType, data: &[u8], rows: usize, cols: usize) -> Option<Packed> {
    let row_bytes = packed_row_bytes(ty, cols)?;
    if rows == 0 || !rows.is_multiple_of(PACK_ROWS) {
        return None;
    }
    // Values per block, bytes per block in the file and per packed group, and what puts row
    // `r`'s block into its places in a group.
    let (qk, block, group, pack_row): (usize, usize, usize, PackRow) = match ty {
        GgmlType::Q8_0 => (QK, Q8_0_BYTES, Q8_0_X8_BYTES, pack_q8_0_row),
        GgmlType::Q4_0 => (QK, Q4_0_BYTES, Q4_0_X8_BYTES, pack_q4_0_row),
        GgmlType::Q4_K => (QK_K, Q4_K_BYTES, Q4_K_X8_BYTES, pack_q4_k_row),
        GgmlType::Q5_K => (QK_K, Q5_K_BYTES, Q5_K_X8_BYTES, pack_q5_k_row),
        _ => (QK_K, Q6_K_BYTES, Q6_K_X8_BYTES, pack_q6_k_row),
    };
    let nb = cols / qk;
    if data.len() != rows * nb * block {
        return None;
    }
    let mut out = Packed::zeroed(rows * row_bytes)?;
    let groups = data.chunks_exact(PACK_ROWS * nb * block);
    for (src, dst) in groups.zip(out.chunks_exact_mut(nb * group)) {
        for (b, g) in dst.chunks_exact_mut(group).enumerate() {
            for r in 0..PACK_ROWS {
                pack_row(&src[(r * nb + b) * block..][..block], r, g);
            }
        }
    }
    Some(out)
}

/// Row `r`'s Q8_0 block into a packed group: its scale, and its quants moved to unsigned
/// (plus 128) for unsigned-by-signed byte products.
fn pack_q8_0_row(blk: &[u8], r: usize, g: &mut [u8]) {
    g[2 * r..][..2].copy_from_slice(&blk[..2]);
    for (o, &v) in g[16 + 32 * r..][..32].iter_mut().zip(&blk[2..]) {
        *o = v ^ 0x80;
    }
}

/// Row `r`'s Q4_0 block into a packed group: its scale and its nibbles (unsigned already).
fn pack_q4_0_row(blk: &[u8], r: usize, g: &mut [u8]) {
    g[2 * r..][..2].copy_from_slice(&blk[..2]);
    g[16 + 16 * r..][..16].copy_from_slice(&blk[2..]);
}

/// Row `r`'s Q4_K block into a packed group.
fn pack_q4_k_row(blk: &[u8], r: usize, g: &mut [u8]) {
    pack_k4_row(blk, &blk[16..], r, g);
}

/// Row `r`'s Q5_K block into a packed group: its fifth bits, and the rest as Q4_K's.
fn pack_q5_k_row(blk: &[u8], r: usize, g: &mut [u8]) {
    for k in 0..8 {
        g[Q5_K_X8_HIGH + 32 * k + 4 * r..][..4].copy_from_slice(&blk[16 + 4 * k..][..4]);
    }
    pack_k4_row(blk, &blk[48..], r, g);
}

/// The parts Q4_K and Q5_K share: scales, minimums, and the low four bits `qs`.
fn pack_k4_row(blk: &[u8], qs: &[u8], r: usize, g: &mut [u8]) {
    g[Q4_K_X8_D + 2 * r..][..2].copy_from_slice(&blk[0..2]);
    g[Q4_K_X8_DMIN + 2 * r..][..2].copy_from_slice(&blk[2..4]);
    let packed: &[u8; 12] = blk[4..16].try_into().expect("12 scale bytes");
    for j in 0..8 {
        let (sc, m) = scale_min_k4(packed, j);
        g[Q4_K_X8_SCALES + 8 * j + r] = sc;
        g[Q4_K_X8_MINS + 16 * (j / 2) + 2 * r + j % 2] = m;
    }
    for c in 0..32 {
        let (i, k) = (c / 8, c % 8);
        g[Q4_K_X8_QUANTS + 32 * c + 4 * r..][..4].copy_from_slice(&qs[32 * i + 4 * k..][..4]);
    }
}

/// The little-endian word at `b[i..i + 4]`.
fn word(b: &[u8], i: usize) -> u32 {
    u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]])
}

/// Nibble `p` (0 low, 1 high) of each byte of `w0` in the low nibbles, of `w1` in the high.
fn merge_nibbles(w0: u32, w1: u32, p: usize) -> u32 {
    const LOW: u32 = 0x0f0f_0f0f;
    if p == 0 {
        (w0 & LOW) | ((w1 & LOW) << 4)
    } else {
        ((w0 >> 4) & LOW) | (w1 & !LOW)
    }
}

/// Row `r`'s Q6_K block `blk` into its places in the packed group `g`.
///
/// In the block, each half `h` of 128 values keeps value `128h + 32j + l`'s low four bits in
/// nibble `j / 2` of `ql[64h + 32(j % 2) + l]` and its top two in bits `2j..` of
/// `qh[32h + l]`. So quant chunk `8i + k` (values `64i + 4k..` and `64i + 32 + 4k..`, half
/// `i / 2`, `j` = `2(i % 2)` and one more) takes nibble `i % 2` of the words at
/// `ql[64h + 4k]` and `ql[64h + 32 + 4k]`, and high-bit chunk `4i + m` nibble `i % 2` of the
/// words at `qh[32h + 8m]` and `qh[32h + 8m + 4]`.
fn pack_q6_k_row(blk: &[u8], r: usize, g: &mut [u8]) {
    g[Q6_K_X8_D + 2 * r..][..2].copy_from_slice(&blk[208..210]);
    for j in 0..16 {
        g[Q6_K_X8_SCALES + 8 * j + r] = blk[192 + j];
    }
    for c in 0..32 {
        let (i, k) = (c / 8, c % 8);
        let ql = 64 * (i / 2) + 4 * k;
        let v = merge_nibbles(word(blk, ql), word(blk, ql + 32), i % 2);
        g[Q6_K_X8_LOW + 32 * c + 4 * r..][..4].copy_from_slice(&v.to_le_bytes());
    }
    for e in 0..16 {
        let (i, m) = (e / 4, e % 4);
        let qh = 128 + 32 * (i / 2) + 8 * m;
        let v = merge_nibbles(word(blk, qh), word(blk, qh + 4), i % 2);
        g[Q6_K_X8_HIGH + 32 * e + 4 * r..][..4].copy_from_slice(&v.to_le_bytes());
    }
}
