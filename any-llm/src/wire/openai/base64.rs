//! Standard base64 (RFC 4648, with padding), for embeddings sent as `encoding_format:
//! "base64"`: little-endian `f32`s, which the official clients ask for by default.

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Encodes `bytes`.
pub(super) fn encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Decodes `text`.
///
/// # Errors
/// A message naming the first character that is not base64, or a wrong length.
pub(super) fn decode(text: &str) -> Result<Vec<u8>, String> {
    let text = text.trim_end_matches('=');
    if text.len() % 4 == 1 {
        return Err(format!("base64 text of length {} is truncated", text.len()));
    }
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for (i, c) in text.bytes().enumerate() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => {
                return Err(format!(
                    "invalid base64 character {:?} at position {i}",
                    c as char
                ));
            }
        };
        acc = acc << 6 | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Ok(out)
}

/// Little-endian `f32`s as base64.
pub(super) fn encode_f32s(values: &[f32]) -> String {
    let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    encode(&bytes)
}

/// Base64 of little-endian `f32`s, decoded.
pub(super) fn decode_f32s(text: &str) -> Result<Vec<f32>, String> {
    let bytes = decode(text)?;
    if bytes.len() % 4 != 0 {
        return Err(format!(
            "base64 embedding has {} bytes, not a whole number of 4-byte floats",
            bytes.len()
        ));
    }
    Ok(bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_4648_vectors() {
        for (plain, coded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(encode(plain.as_bytes()), coded);
            assert_eq!(decode(coded).expect("decodes"), plain.as_bytes());
        }
    }

    #[test]
    fn floats_round_trip_and_bad_text_is_named() {
        let v = [1.0f32, -0.5, 3.25e-7, f32::MAX];
        assert_eq!(decode_f32s(&encode_f32s(&v)).expect("decodes"), v);
        // 1.0f32 little-endian is 00 00 80 3f.
        assert_eq!(encode_f32s(&[1.0]), "AACAPw==");
        assert!(decode("ab*d").unwrap_err().contains("'*' at position 2"));
        assert!(decode_f32s("Zm9v").unwrap_err().contains("3 bytes"));
    }
}
