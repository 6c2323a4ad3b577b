//! The GGUF reader and writer: round trips, every corruption's named error, and the real model.

mod support;

use any_llm_local::gguf::{
    GgufError, GgufFile, GgufWriter, MetadataArray, MetadataType, MetadataValue,
};
use any_llm_local::quant::GgmlType;

fn every_value_type() -> Vec<(&'static str, MetadataValue)> {
    vec![
        ("t.u8", MetadataValue::U8(200)),
        ("t.i8", MetadataValue::I8(-100)),
        ("t.u16", MetadataValue::U16(60_000)),
        ("t.i16", MetadataValue::I16(-30_000)),
        ("t.u32", MetadataValue::U32(4_000_000_000)),
        ("t.i32", MetadataValue::I32(-2_000_000_000)),
        ("t.u64", MetadataValue::U64(u64::MAX - 1)),
        ("t.i64", MetadataValue::I64(i64::MIN + 1)),
        ("t.f32", MetadataValue::F32(-1.5e-3)),
        ("t.f64", MetadataValue::F64(std::f64::consts::PI)),
        ("t.bool.true", MetadataValue::Bool(true)),
        ("t.bool.false", MetadataValue::Bool(false)),
        ("t.string", MetadataValue::from("héllo, wörld ✓")),
        ("t.string.empty", MetadataValue::from("")),
        ("a.u8", vec![1u8, 2, 255].into()),
        ("a.i8", vec![-1i8, 0, 127].into()),
        ("a.u16", vec![1u16, 65535].into()),
        ("a.i16", vec![-32768i16, 5].into()),
        ("a.u32", vec![7u32, 8, 9].into()),
        ("a.i32", vec![-7i32, 8].into()),
        ("a.u64", vec![u64::MAX].into()),
        ("a.i64", vec![i64::MIN, 0].into()),
        ("a.f32", vec![0.5f32, -0.25, f32::MAX].into()),
        ("a.f64", vec![1e300f64, -0.0].into()),
        ("a.bool", vec![true, false, true].into()),
        ("a.string", vec!["a", "", "ünïcode"].into()),
        (
            "a.empty",
            MetadataValue::Array(MetadataArray::U32(Vec::new())),
        ),
        (
            "a.nested",
            vec![
                MetadataArray::I32(vec![1, 2]),
                MetadataArray::String(vec!["x".into()]),
                MetadataArray::Array(vec![
                    MetadataArray::F32(vec![1.0]),
                    MetadataArray::Bool(vec![]),
                ]),
                MetadataArray::Array(vec![]),
            ]
            .into(),
        ),
    ]
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// A file with every value type and three tensors of different types and sizes.
fn sample_writer() -> GgufWriter {
    let mut w = GgufWriter::new();
    for (k, v) in every_value_type() {
        w.add_metadata(k, v).unwrap();
    }
    w.add_tensor("bias", &[3], GgmlType::F32, f32_bytes(&[1.0, 2.0, 3.0]))
        .unwrap();
    let q4: Vec<u8> = (0..18 * 4).map(|i| i as u8).collect();
    w.add_tensor("blk.0.w", &[64, 2], GgmlType::Q4_0, q4)
        .unwrap();
    let q8: Vec<u8> = (0..34).map(|i| (i * 7) as u8).collect();
    w.add_tensor("blk.0.v", &[32], GgmlType::Q8_0, q8).unwrap();
    w
}

#[test]
fn round_trip_keeps_every_value_type_and_tensor() {
    let bytes = sample_writer().to_bytes();
    let f = GgufFile::from_bytes(bytes).unwrap();
    assert_eq!(f.version(), 3);
    assert_eq!(f.alignment(), 32);
    assert_eq!(f.data_offset() % 32, 0);
    let expected = every_value_type();
    let got: Vec<_> = f.metadata().iter().collect();
    assert_eq!(got.len(), expected.len());
    for ((gk, gv), (ek, ev)) in got.iter().zip(&expected) {
        assert_eq!(gk, ek, "keys keep file order");
        assert_eq!(*gv, ev, "value of {ek}");
    }
    assert_eq!(f.tensors().len(), 3);
    let bias = f.tensor("bias").unwrap();
    assert_eq!(bias.dims, [3]);
    assert_eq!(bias.ty, GgmlType::F32);
    assert_eq!(f.tensor_data(bias), f32_bytes(&[1.0, 2.0, 3.0]));
    let w = f.tensor("blk.0.w").unwrap();
    assert_eq!(
        (w.ty, w.n_elements(), w.byte_len()),
        (GgmlType::Q4_0, 128, 72)
    );
    assert_eq!(w.offset % 32, 0);
    assert_eq!(f.tensor_data(w)[5], 5);
    let v = f.tensor("blk.0.v").unwrap();
    assert_eq!(f.tensor_data(v)[33], (33 * 7) as u8);
    assert!(f.tensor("missing").is_none());
}

#[test]
fn round_trip_through_a_file_with_custom_alignment() {
    let mut w = GgufWriter::new();
    w.add_metadata("general.alignment", 64u32).unwrap();
    w.add_tensor("a", &[1], GgmlType::F32, f32_bytes(&[9.0]))
        .unwrap();
    w.add_tensor("b", &[2], GgmlType::F32, f32_bytes(&[4.0, 5.0]))
        .unwrap();
    let dir = std::env::temp_dir().join(format!("any-llm-gguf-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("aligned.gguf");
    w.write_file(&path).unwrap();
    let f = GgufFile::open(&path).unwrap();
    assert_eq!(f.alignment(), 64);
    assert_eq!(f.data_offset() % 64, 0);
    let b = f.tensor("b").unwrap();
    assert_eq!(b.offset, 64);
    assert_eq!(f.tensor_data(b), f32_bytes(&[4.0, 5.0]));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn writer_rejects_bad_input() {
    let mut w = GgufWriter::new();
    w.add_metadata("k", 1u32).unwrap();
    assert!(matches!(
        w.add_metadata("k", 2u32),
        Err(GgufError::DuplicateKey { .. })
    ));
    assert!(matches!(
        w.add_metadata("general.alignment", 48u32),
        Err(GgufError::BadAlignment { .. })
    ));
    let e = w
        .add_tensor("t", &[32], GgmlType::Q8_0, vec![0; 33])
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "GGUF tensor t: dims [32] of type Q8_0 need 34 bytes, found 33"
    );
    w.add_tensor("t", &[32], GgmlType::Q8_0, vec![0; 34])
        .unwrap();
    assert!(matches!(
        w.add_tensor("t", &[32], GgmlType::Q8_0, vec![0; 34]),
        Err(GgufError::DuplicateTensor { .. })
    ));
}

#[test]
fn version_2_reads_and_version_1_is_refused_by_name() {
    let mut bytes = sample_writer().to_bytes();
    bytes[4] = 2;
    assert_eq!(GgufFile::from_bytes(bytes.clone()).unwrap().version(), 2);
    bytes[4] = 1;
    let e = GgufFile::from_bytes(bytes).unwrap_err();
    assert!(matches!(e, GgufError::UnsupportedVersion { found: 1 }));
    assert_eq!(
        e.to_string(),
        "unsupported GGUF version 1: this reader supports versions 2 and 3"
    );
}

#[test]
fn wrong_magic_shows_the_bytes_found() {
    let mut bytes = sample_writer().to_bytes();
    bytes[..4].copy_from_slice(b"GGML");
    let e = GgufFile::from_bytes(bytes).unwrap_err().to_string();
    assert!(e.contains("found 47 47 4d 4c"), "{e}");
    let e = GgufFile::from_bytes(Vec::new()).unwrap_err().to_string();
    assert!(e.contains("found an empty file"), "{e}");
}

#[test]
fn every_truncation_is_an_error_never_a_panic() {
    let bytes = sample_writer().to_bytes();
    for len in 0..bytes.len() {
        let r = GgufFile::from_bytes(bytes[..len].to_vec());
        assert!(
            r.is_err(),
            "a file cut to {len} of {} bytes was accepted",
            bytes.len()
        );
    }
    let e = GgufFile::from_bytes(bytes[..bytes.len() / 2].to_vec()).unwrap_err();
    assert!(
        matches!(
            e,
            GgufError::Truncated { .. } | GgufError::AbsurdCount { .. }
        ),
        "{e}"
    );
    let e = GgufFile::from_bytes(bytes[..30].to_vec()).unwrap_err();
    assert!(matches!(e, GgufError::AbsurdCount { .. }), "{e}");
    let e = GgufFile::from_bytes(bytes[..bytes.len() - 1].to_vec()).unwrap_err();
    assert!(matches!(e, GgufError::TensorOutOfBounds { .. }), "{e}");
    assert!(
        e.to_string().starts_with("GGUF tensor blk.0.v: data bytes"),
        "{e}"
    );
}

#[test]
fn truncation_names_what_was_being_read() {
    let mut w = GgufWriter::new();
    w.add_metadata("tokenizer.ggml.model", "gpt2").unwrap();
    let bytes = w.to_bytes();
    // Header (24) + key length (8) + key (20) + type (4) + string length (8) + 2 of 4 bytes.
    let e = GgufFile::from_bytes(bytes[..66].to_vec())
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "GGUF file truncated: reading the value of metadata key tokenizer.ggml.model at offset \
         64 needs 4 bytes, the file has 66"
    );
}

/// Byte offset of the first tensor info in a file with no metadata.
const FIRST_TENSOR_INFO: usize = 24;

fn one_tensor(name: &str, dims: &[u64], ty: GgmlType) -> Vec<u8> {
    let mut w = GgufWriter::new();
    let len = ty.row_size(dims[0] as usize).unwrap() * dims[1..].iter().product::<u64>() as usize;
    w.add_tensor(name, dims, ty, vec![0; len]).unwrap();
    w.to_bytes()
}

/// Offsets of the dims, type and offset fields of the single tensor in `one_tensor`.
fn fields(name: &str, n_dims: usize) -> (usize, usize, usize) {
    let dims = FIRST_TENSOR_INFO + 8 + name.len() + 4;
    let ty = dims + 8 * n_dims;
    (dims, ty, ty + 4)
}

#[test]
fn unknown_tensor_type_names_the_tensor_and_number() {
    let name = "blk.3.ffn_up.weight";
    let mut bytes = one_tensor(name, &[32, 2], GgmlType::Q4_0);
    let (_, ty, _) = fields(name, 2);
    bytes[ty..ty + 4].copy_from_slice(&99u32.to_le_bytes());
    let e = GgufFile::from_bytes(bytes).unwrap_err().to_string();
    assert_eq!(e, "GGUF tensor blk.3.ffn_up.weight: unknown ggml type 99");
}

#[test]
fn shape_not_a_multiple_of_the_block_is_named() {
    let name = "blk.0.attn_q.weight";
    let mut bytes = one_tensor(name, &[32, 2], GgmlType::Q4_0);
    let (dims, _, _) = fields(name, 2);
    bytes[dims..dims + 8].copy_from_slice(&33u64.to_le_bytes());
    let e = GgufFile::from_bytes(bytes).unwrap_err();
    assert!(matches!(e, GgufError::ShapeMismatch { .. }));
    assert_eq!(
        e.to_string(),
        "GGUF tensor blk.0.attn_q.weight: type Q4_0 packs 32 values per block, so the first \
         dimension must be a multiple of 32; found dims [33, 2]"
    );
}

#[test]
fn data_out_of_bounds_and_misaligned_offsets_are_named() {
    let name = "w";
    let bytes = one_tensor(name, &[32, 2], GgmlType::Q8_0);
    let (dims, _, off) = fields(name, 2);

    let mut big = bytes.clone();
    big[dims + 8..dims + 16].copy_from_slice(&1000u64.to_le_bytes());
    let e = GgufFile::from_bytes(big).unwrap_err().to_string();
    assert!(
        e.starts_with("GGUF tensor w: data bytes 96..34096 lie outside the file"),
        "{e}"
    );

    let mut far = bytes.clone();
    far[off..off + 8].copy_from_slice(&(u64::MAX - 31).to_le_bytes());
    assert!(matches!(
        GgufFile::from_bytes(far),
        Err(GgufError::TensorOutOfBounds { .. })
    ));

    let mut odd = bytes.clone();
    odd[off..off + 8].copy_from_slice(&4u64.to_le_bytes());
    let e = GgufFile::from_bytes(odd).unwrap_err().to_string();
    assert_eq!(
        e,
        "GGUF tensor w: data offset 4 is not a multiple of the alignment 32"
    );

    let mut huge = bytes;
    huge[dims + 8..dims + 16].copy_from_slice(&u64::MAX.to_le_bytes());
    assert!(matches!(
        GgufFile::from_bytes(huge),
        Err(GgufError::SizeOverflow { .. })
    ));
}

#[test]
fn too_many_dimensions_are_refused() {
    let name = "w";
    let mut bytes = one_tensor(name, &[32], GgmlType::F32);
    let at = FIRST_TENSOR_INFO + 8 + name.len();
    bytes[at..at + 4].copy_from_slice(&5u32.to_le_bytes());
    assert!(matches!(
        GgufFile::from_bytes(bytes),
        Err(GgufError::TooManyDims { found: 5, .. })
    ));
}

#[test]
fn duplicate_keys_and_tensors_are_refused() {
    let mut w = GgufWriter::new();
    w.add_metadata("k.a", 1u32).unwrap();
    w.add_metadata("k.b", 2u32).unwrap();
    let mut bytes = w.to_bytes();
    // Second key: header 24 + first entry (8 + 3 + 4 + 4) + its length prefix 8.
    let second = 24 + 19 + 8;
    assert_eq!(&bytes[second..second + 3], b"k.b");
    bytes[second + 2] = b'a';
    let e = GgufFile::from_bytes(bytes).unwrap_err().to_string();
    assert_eq!(e, "GGUF metadata key k.a appears more than once");

    let mut w = GgufWriter::new();
    w.add_tensor("t1", &[1], GgmlType::F32, vec![0; 4]).unwrap();
    w.add_tensor("t2", &[1], GgmlType::F32, vec![0; 4]).unwrap();
    let mut bytes = w.to_bytes();
    let second = 24 + (8 + 2 + 4 + 8 + 4 + 8) + 8;
    assert_eq!(&bytes[second..second + 2], b"t2");
    bytes[second + 1] = b'1';
    let e = GgufFile::from_bytes(bytes).unwrap_err().to_string();
    assert_eq!(e, "GGUF tensor t1 appears more than once");
}

#[test]
fn absurd_counts_fail_before_allocating() {
    let bytes = sample_writer().to_bytes();
    for (at, what) in [(8, "tensor infos"), (16, "metadata")] {
        let mut b = bytes.clone();
        b[at..at + 8].copy_from_slice(&(u64::MAX / 2).to_le_bytes());
        let e = GgufFile::from_bytes(b).unwrap_err();
        assert!(matches!(e, GgufError::AbsurdCount { .. }), "{e}");
        assert!(e.to_string().contains(what), "{e}");
    }

    let mut w = GgufWriter::new();
    w.add_metadata("tokens", vec!["a", "b"]).unwrap();
    let mut b = w.to_bytes();
    // Header 24 + key (8 + 6) + type 4 + element type 4, then the count.
    let count = 24 + 14 + 4 + 4;
    b[count..count + 8].copy_from_slice(&(1u64 << 40).to_le_bytes());
    let e = GgufFile::from_bytes(b).unwrap_err().to_string();
    assert!(
        e.starts_with("GGUF array tokens of string: count 1099511627776 is impossible"),
        "{e}"
    );

    // A string whose length runs past the end.
    let mut b = w.to_bytes();
    b[count + 8..count + 16].copy_from_slice(&u64::MAX.to_le_bytes());
    assert!(matches!(
        GgufFile::from_bytes(b),
        Err(GgufError::Truncated { .. })
    ));
}

#[test]
fn bad_value_types_bools_utf8_and_nesting_are_named() {
    let mut w = GgufWriter::new();
    w.add_metadata("flag", true).unwrap();
    let bytes = w.to_bytes();
    let ty_at = 24 + 8 + 4;
    let mut b = bytes.clone();
    b[ty_at..ty_at + 4].copy_from_slice(&13u32.to_le_bytes());
    let e = GgufFile::from_bytes(b).unwrap_err().to_string();
    assert_eq!(
        e,
        "GGUF metadata key flag: unknown value type 13 (expected 0..=12)"
    );
    let mut b = bytes.clone();
    b[ty_at + 4] = 2;
    let e = GgufFile::from_bytes(b).unwrap_err().to_string();
    assert_eq!(
        e,
        "GGUF metadata key flag: expected a bool byte 0 or 1, found 2"
    );
    let mut b = bytes;
    b[24 + 8] = 0xff;
    let e = GgufFile::from_bytes(b).unwrap_err();
    assert!(matches!(e, GgufError::InvalidUtf8 { .. }), "{e}");

    let mut deep = MetadataArray::U8(vec![1]);
    for _ in 0..20 {
        deep = MetadataArray::Array(vec![deep]);
    }
    let mut w = GgufWriter::new();
    w.add_metadata("deep", deep).unwrap();
    let e = GgufFile::from_bytes(w.to_bytes()).unwrap_err().to_string();
    assert_eq!(
        e,
        "GGUF metadata key deep: arrays nested deeper than 16 levels"
    );
}

#[test]
fn getters_name_the_key_and_the_types() {
    let f = GgufFile::from_bytes(sample_writer().to_bytes()).unwrap();
    let m = f.metadata();
    assert_eq!(m.get_u32("t.u8").unwrap(), 200);
    assert_eq!(m.get_u32("t.u16").unwrap(), 60_000);
    assert_eq!(m.get_i32("t.i16").unwrap(), -30_000);
    assert_eq!(m.get_u64("t.u64").unwrap(), u64::MAX - 1);
    assert_eq!(m.get_f32("t.f32").unwrap(), -1.5e-3);
    assert!(m.get_bool("t.bool.true").unwrap());
    assert_eq!(m.get_str_array("a.string").unwrap()[2], "ünïcode");
    assert_eq!(m.get_f32_array("a.f32").unwrap()[1], -0.25);
    assert_eq!(m.get_i32_array("a.i32").unwrap(), [-7, 8]);
    assert_eq!(
        m.get_array("a.nested").unwrap().element_type(),
        MetadataType::Array
    );
    assert_eq!(m.get_opt_str("nope").unwrap(), None);
    assert_eq!(m.get_opt_u32("t.u32").unwrap(), Some(4_000_000_000));

    let e = m.get_u32("t.i32").unwrap_err().to_string();
    assert_eq!(
        e,
        "GGUF metadata key t.i32: expected an integer that fits u32, found i32 -2000000000"
    );
    let e = m.get_str_array("a.i32").unwrap_err().to_string();
    assert_eq!(
        e,
        "GGUF metadata key a.i32: expected an array of string, found array of 2 i32"
    );
    let e = m.get_str("tokenizer.ggml.model").unwrap_err().to_string();
    assert_eq!(e, "GGUF metadata key tokenizer.ggml.model is missing");
    assert!(matches!(
        m.get_opt_bool("t.string"),
        Err(GgufError::WrongType { .. })
    ));
}

#[test]
fn reads_the_real_default_model() {
    let f = GgufFile::open(support::default_model_path()).unwrap();
    let m = f.metadata();
    assert_eq!(m.get_str("general.architecture").unwrap(), "llama");
    assert_eq!(f.tensors().len(), 272);
    let emb = f.tensor("token_embd.weight").unwrap();
    assert_eq!(emb.ty, GgmlType::Q8_0);
    assert_eq!(emb.dims, [576, 49152]);
    assert_eq!(f.tensor_data(emb).len(), 49152 * 18 * 34);
    assert_eq!(
        m.get_str_array("tokenizer.ggml.tokens").unwrap().len(),
        49152
    );
    assert_eq!(
        m.get_str_array("tokenizer.ggml.merges").unwrap().len(),
        48900
    );
    assert_eq!(m.get_str("tokenizer.ggml.model").unwrap(), "gpt2");
    assert_eq!(m.get_u32("llama.embedding_length").unwrap(), 576);
    for t in f.tensors() {
        assert!(t.ty.is_supported(), "{} has type {}", t.name, t.ty);
        assert_eq!(f.tensor_data(t).len(), t.byte_len());
    }
}

/// Opening a model keeps the reader's typed error as the `any_core::Error`'s source, so a
/// caller can tell a corrupt file from the rest without reading the message.
#[test]
fn opening_a_corrupt_model_keeps_the_gguf_error_as_its_source() {
    use std::error::Error as _;

    let dir = std::env::temp_dir().join(format!("any-llm-corrupt-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bytes = sample_writer().to_bytes();

    let truncated = dir.join("truncated.gguf");
    std::fs::write(&truncated, &bytes[..bytes.len() - 1]).unwrap();
    let err = any_llm_local::LocalModel::open(&truncated).unwrap_err();
    assert!(matches!(err, any_core::Error::Model { .. }), "{err:?}");
    assert!(err.to_string().contains("truncated.gguf"), "{err}");
    let source = err.source().expect("the GGUF error is the source");
    assert!(
        matches!(
            source.downcast_ref::<GgufError>(),
            Some(GgufError::TensorOutOfBounds { .. })
        ),
        "{source:?}"
    );

    // A well-formed file that is not a model: the missing key is a typed error too.
    let not_a_model = dir.join("not-a-model.gguf");
    std::fs::write(&not_a_model, &bytes).unwrap();
    let err = any_llm_local::LocalModel::open(&not_a_model).unwrap_err();
    let source = err.source().expect("the GGUF error is the source");
    assert!(
        matches!(
            source.downcast_ref::<GgufError>(),
            Some(GgufError::MissingKey { key }) if key == "general.architecture"
        ),
        "{source:?}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The llama configuration read from a file of one layer's worth of tensors whose metadata
/// is a small model's with `changes` made.
fn llama_config_with(
    changes: &[(&str, MetadataValue)],
) -> Result<any_llm_local::arch::ModelConfig, any_core::Error> {
    let base = [
        ("general.architecture", MetadataValue::from("llama")),
        ("llama.embedding_length", MetadataValue::U32(8)),
        ("llama.attention.head_count", MetadataValue::U32(2)),
        ("llama.feed_forward_length", MetadataValue::U32(16)),
        ("llama.context_length", MetadataValue::U32(32)),
        ("llama.vocab_size", MetadataValue::U32(4)),
        ("llama.block_count", MetadataValue::U32(1)),
    ];
    let mut w = GgufWriter::new();
    for (k, v) in &base {
        let v = changes.iter().find(|(c, _)| c == k).map_or(v, |(_, v)| v);
        w.add_metadata(*k, v.clone()).unwrap();
    }
    for (k, v) in changes {
        if !base.iter().any(|(b, _)| b == k) {
            w.add_metadata(*k, v.clone()).unwrap();
        }
    }
    for i in 0..9 {
        w.add_tensor(
            format!("blk.0.t{i}"),
            &[1],
            GgmlType::F32,
            f32_bytes(&[0.0]),
        )
        .unwrap();
    }
    let file = GgufFile::from_bytes(w.to_bytes()).unwrap();
    any_llm_local::arch::ModelConfig::from_gguf(&file)
}

#[test]
fn model_sizes_and_constants_that_make_no_sense_are_named() {
    assert!(llama_config_with(&[]).is_ok());
    let cases = [
        (
            "llama.block_count",
            MetadataValue::U32(0),
            "block_count is 0",
        ),
        (
            "llama.block_count",
            MetadataValue::U32(1 << 31),
            "block_count is 2147483648",
        ),
        (
            "llama.embedding_length",
            MetadataValue::U32(0),
            "embedding_length 0",
        ),
        (
            "llama.feed_forward_length",
            MetadataValue::U32(0),
            "feed_forward_length is 0",
        ),
        (
            "llama.attention.layer_norm_rms_epsilon",
            MetadataValue::F32(f32::NAN),
            "layer_norm_rms_epsilon is NaN",
        ),
        (
            "llama.attention.layer_norm_rms_epsilon",
            MetadataValue::F32(-1e-5),
            "layer_norm_rms_epsilon is -0.00001",
        ),
        (
            "llama.rope.freq_base",
            MetadataValue::F32(0.0),
            "rope.freq_base is 0",
        ),
        (
            "llama.rope.freq_base",
            MetadataValue::F32(-10.0),
            "rope.freq_base is -10",
        ),
    ];
    for (key, value, expected) in cases {
        let err = llama_config_with(&[(key, value.clone())])
            .expect_err(&format!("{key} = {value:?} is refused"))
            .to_string();
        assert!(err.contains(expected), "{key} = {value:?}: {err}");
    }
}

#[test]
fn paths_that_are_not_files_are_named_without_blocking() {
    let dir = std::env::temp_dir().join(format!("any-gguf-notfile-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let fifo = dir.join("model.gguf");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("mkfifo runs");
    assert!(made.success());
    for (path, found) in [
        (dir.as_path(), "a directory"),
        (fifo.as_path(), "a FIFO"),
        (std::path::Path::new("/dev/zero"), "a device"),
    ] {
        let err = GgufFile::open(path).unwrap_err();
        assert!(matches!(err, GgufError::NotAFile { .. }), "{err:?}");
        assert!(
            err.to_string()
                .contains(&format!("{found}, not a regular file")),
            "{err}"
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
