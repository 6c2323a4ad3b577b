//! The features: hashed word and character n-grams, and the windows a long text is read in.

/// Word separators, spelled out so that the training script and this file agree exactly.
const WHITESPACE: &[char] = &[
    '\t', '\n', '\u{b}', '\u{c}', '\r', ' ', '\u{85}', '\u{a0}', '\u{1680}', '\u{2000}',
    '\u{2001}', '\u{2002}', '\u{2003}', '\u{2004}', '\u{2005}', '\u{2006}', '\u{2007}', '\u{2008}',
    '\u{2009}', '\u{200a}', '\u{2028}', '\u{2029}', '\u{202f}', '\u{205f}', '\u{3000}',
];

/// Characters per window, and between window starts: a text longer than a window is also
/// scored window by window, and scores its highest, so an injection inside a long document
/// is not diluted by the rest of it.
const WINDOW: usize = 500;
const STRIDE: usize = 250;

/// The windows of a text longer than [`WINDOW`] characters (none for a shorter one); the
/// last one ends at the text's end.
pub(super) fn windows(text: &str) -> impl Iterator<Item = &str> {
    let bounds: Vec<usize> = text
        .char_indices()
        .map(|(i, _)| i)
        .chain(std::iter::once(text.len()))
        .collect();
    let chars = bounds.len() - 1;
    let count = if chars <= WINDOW {
        0
    } else {
        (chars - WINDOW).div_ceil(STRIDE) + 1
    };
    (0..count).map(move |i| {
        let start = i * STRIDE;
        let end = (start + WINDOW).min(chars);
        &text[bounds[start]..bounds[end]]
    })
}

const FNV_OFFSET: u32 = 0x811c_9dc5;
const FNV_PRIME: u32 = 0x0100_0193;

fn fnv_feed(mut h: u32, bytes: &[u8]) -> u32 {
    for &b in bytes {
        h = (h ^ u32::from(b)).wrapping_mul(FNV_PRIME);
    }
    h
}

fn fnv1a(kind: u8, parts: &[&[u8]]) -> u32 {
    parts
        .iter()
        .fold(fnv_feed(FNV_OFFSET, &[kind]), |h, p| fnv_feed(h, p))
}

/// Calls `emit` with the hash bucket of every feature of a text, a bucket once per feature
/// occurrence (so possibly more than once): word unigrams and bigrams (ASCII punctuation
/// trimmed from each word's ends) and character 3- to 5-grams of the lower-cased text with
/// its whitespace runs collapsed to one space, each keyed by its kind (`w`, `b`, `c`) and
/// hashed with 32-bit FNV-1a.
pub(super) fn visit_features(text: &str, bits: u32, mut emit: impl FnMut(u32)) {
    let lower = text.to_lowercase();
    let words: Vec<&str> = lower.split(WHITESPACE).filter(|w| !w.is_empty()).collect();
    let stripped: Vec<&str> = words
        .iter()
        .map(|w| w.trim_matches(|c: char| c.is_ascii_punctuation()))
        .collect();
    let mask = (1u32 << bits) - 1;
    for w in &stripped {
        if !w.is_empty() {
            emit(fnv1a(b'w', &[w.as_bytes()]) & mask);
        }
    }
    for pair in stripped.windows(2) {
        if !pair[0].is_empty() && !pair[1].is_empty() {
            emit(fnv1a(b'b', &[pair[0].as_bytes(), b" ", pair[1].as_bytes()]) & mask);
        }
    }
    let mut joined = String::with_capacity(lower.len() + 2);
    joined.push(' ');
    for (i, w) in words.iter().enumerate() {
        if i > 0 {
            joined.push(' ');
        }
        joined.push_str(w);
    }
    joined.push(' ');
    // Byte offsets of each character, and the end.
    let bounds: Vec<usize> = joined
        .char_indices()
        .map(|(i, _)| i)
        .chain(std::iter::once(joined.len()))
        .collect();
    let chars = bounds.len() - 1;
    let bytes = joined.as_bytes();
    // The 3-, 4- and 5-gram at each position share their prefix, and FNV-1a reads bytes in
    // order, so each longer gram's hash continues the shorter one's.
    let start = fnv_feed(FNV_OFFSET, b"c");
    for i in 0..chars.saturating_sub(2) {
        let mut h = fnv_feed(start, &bytes[bounds[i]..bounds[i + 3]]);
        emit(h & mask);
        for n in 4..=5 {
            if i + n > chars {
                break;
            }
            h = fnv_feed(h, &bytes[bounds[i + n - 1]..bounds[i + n]]);
            emit(h & mask);
        }
    }
}

/// The sorted, distinct hash buckets a text sets (see [`visit_features`]).
#[cfg(test)]
pub(super) fn features(text: &str, bits: u32) -> Vec<u32> {
    let mut out = Vec::new();
    visit_features(text, bits, |b| out.push(b));
    out.sort_unstable();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_cover_long_texts() {
        assert_eq!(windows(&"é".repeat(500)).count(), 0);
        let text: String = (0..1201)
            .map(|i| char::from(b'a' + (i % 26) as u8))
            .collect();
        let w: Vec<&str> = windows(&text).collect();
        // 1201 characters: starts 0, 250, 500, 750 (the last reaching the end).
        assert_eq!(w.len(), 4);
        assert_eq!(w[0], &text[..500]);
        assert_eq!(w[3], &text[750..1201]);
        let multibyte = "ü".repeat(501);
        assert_eq!(windows(&multibyte).last(), Some("ü".repeat(251).as_str()));
    }

    #[test]
    fn features_follow_the_definition() {
        // "a b": words a, b; bigram "a b"; char grams of " a b ": " a ", "a b", " b ",
        // " a b", "a b ", " a b " — 9 distinct keys (before hashing collisions).
        assert_eq!(features("A \u{2003}b", 18).len(), 9);
        assert_eq!(features("", 18), Vec::<u32>::new());
        assert_eq!(features("  \n ", 18), Vec::<u32>::new());
        // Punctuation is trimmed from words but kept in character n-grams.
        assert_ne!(features("stop.", 18), features("stop", 18));
    }
}
