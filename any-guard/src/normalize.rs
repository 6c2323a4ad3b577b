//! Folding text to a canonical form before matching, with a map back to the original bytes.
//!
//! Evasions this undoes: case, look-alike letters from other scripts (Cyrillic `а` for Latin
//! `a`), full-width forms, diacritics (combining marks, precomposed Latin letters such as `í`,
//! and letters with a stroke such as `ø`), invisible characters inside words, runs of spaces
//! and separators, and words spelled out letter by letter (`i g n o r e`).

use unicode_general_category::{GeneralCategory, get_general_category};

/// Text in canonical form, and where each of its bytes came from.
#[derive(Debug)]
pub(crate) struct Normalized {
    pub(crate) text: String,
    /// For each byte of `text`, the original byte range of the character it came from.
    origin: Vec<(usize, usize)>,
}

impl Normalized {
    /// The original byte range behind `text[start..end]`.
    pub(crate) fn original(&self, start: usize, end: usize) -> (usize, usize) {
        let s = self.origin.get(start).map_or(0, |o| o.0);
        let e = end
            .checked_sub(1)
            .and_then(|i| self.origin.get(i))
            .map_or(s, |o| o.1);
        (s, e.max(s))
    }
}

/// Whether `c` is invisible in rendering: format characters (zero-width space, joiners, bidi
/// controls, tag characters) and the soft hyphen.
pub(crate) fn is_invisible(c: char) -> bool {
    c == '\u{AD}' || get_general_category(c) == GeneralCategory::Format
}

/// The ASCII letter a look-alike stands for, if it is one.
fn fold_confusable(c: char) -> Option<char> {
    Some(match c {
        // Cyrillic
        'а' | 'А' => 'a',
        'в' | 'В' => 'b',
        'с' | 'С' => 'c',
        'ԁ' => 'd',
        'е' | 'Е' | 'ё' => 'e',
        'һ' | 'Н' => 'h',
        'і' | 'І' | 'ї' => 'i',
        'ј' | 'Ј' => 'j',
        'к' | 'К' => 'k',
        'М' | 'м' => 'm',
        'о' | 'О' => 'o',
        'р' | 'Р' => 'p',
        'ԛ' => 'q',
        'ѕ' | 'Ѕ' => 's',
        'Т' | 'т' => 't',
        'у' | 'У' => 'y',
        'х' | 'Х' => 'x',
        'ԝ' => 'w',
        // Greek
        'α' | 'Α' => 'a',
        'Β' | 'β' => 'b',
        'ε' | 'Ε' => 'e',
        'Η' => 'h',
        'ι' | 'Ι' => 'i',
        'κ' | 'Κ' => 'k',
        'Μ' => 'm',
        'ν' | 'Ν' => 'n',
        'ο' | 'Ο' => 'o',
        'ρ' | 'Ρ' => 'p',
        'τ' | 'Τ' => 't',
        'υ' | 'Υ' => 'u',
        'χ' | 'Χ' => 'x',
        'Ζ' => 'z',
        // Latin letters with a stroke or bar, which have no decomposition
        'ø' | 'Ø' => 'o',
        'ł' | 'Ł' => 'l',
        'đ' | 'Đ' => 'd',
        'ħ' | 'Ħ' => 'h',
        'ŧ' | 'Ŧ' => 't',
        'ƀ' | 'Ƀ' => 'b',
        'ɨ' | 'Ɨ' => 'i',
        'ƶ' | 'Ƶ' => 'z',
        'ɇ' | 'Ɇ' => 'e',
        // Latin variants that render like ASCII letters
        'ı' => 'i',
        'ɑ' => 'a',
        'ℓ' => 'l',
        // Full-width ASCII
        '\u{FF01}'..='\u{FF5E}' => {
            return char::from_u32(c as u32 - 0xFEE0).map(|a| a.to_ascii_lowercase());
        }
        // Mathematical alphanumerics (bold, italic, script, ...): 𝐢𝐠𝐧𝐨𝐫𝐞
        '\u{1D400}'..='\u{1D6A3}' => {
            let i = (c as u32 - 0x1D400) % 52;
            let base = if i < 26 {
                b'a' + i as u8
            } else {
                b'a' + (i - 26) as u8
            };
            base as char
        }
        _ => return None,
    })
}

/// Combining marks (`g` + U+0301) decorate a letter without changing the word.
fn is_mark(c: char) -> bool {
    get_general_category(c) == GeneralCategory::NonspacingMark
}

/// Whether `c` is in the Latin blocks whose letters decompose to a base letter and marks
/// (Latin-1 Supplement, Latin Extended-A and -B, Latin Extended Additional). Other scripts
/// keep their precomposed letters (Hangul syllables, for one, would turn into jamo).
fn is_accented_latin(c: char) -> bool {
    matches!(c, '\u{C0}'..='\u{24F}' | '\u{1E00}'..='\u{1EFF}')
}

/// Characters that separate words for matching: whitespace and the punctuation people put
/// between letters to dodge filters.
fn is_separator(c: char) -> bool {
    c.is_whitespace()
        || matches!(
            c,
            '-' | '_' | '.' | '*' | '~' | '`' | '\'' | '"' | ',' | '+'
        )
}

/// Folds `text` for matching: lower case, look-alikes to ASCII, invisible characters
/// dropped, separator runs to one space, letter-by-letter spellings joined.
pub(crate) fn normalize(text: &str) -> Normalized {
    let mut out = String::with_capacity(text.len());
    let mut origin = Vec::with_capacity(text.len());
    let mut pending_space: Option<(usize, usize)> = None;
    for (i, c) in text.char_indices() {
        let range = (i, i + c.len_utf8());
        if is_invisible(c) || is_mark(c) {
            continue;
        }
        if is_separator(c) {
            pending_space.get_or_insert(range);
            continue;
        }
        if let Some(sp) = pending_space.take()
            && !out.is_empty()
        {
            out.push(' ');
            origin.push(sp);
        }
        let mut push = |ch: char| {
            let before = out.len();
            out.push(ch);
            origin.extend(std::iter::repeat_n(range, out.len() - before));
        };
        let mut fold = |ch: char| {
            if is_mark(ch) {
                return;
            }
            match fold_confusable(ch) {
                Some(a) => push(a),
                None => ch.to_lowercase().for_each(&mut push),
            }
        };
        // A precomposed Latin letter (`í`, U+00ED) is its base letter and a combining mark.
        if is_accented_latin(c) {
            unicode_normalization::char::decompose_canonical(c, fold);
        } else {
            fold(c);
        }
    }
    fold_leet(&mut out);
    join_spelled_out(Normalized { text: out, origin })
}

/// Reads digits as the letters they stand in for (`1gn0r3` to `ignore`), but only inside
/// words that also have letters, so plain numbers stay numbers. One ASCII byte replaces
/// another, so the byte map is unchanged.
fn fold_leet(text: &mut String) {
    let leet = |b: u8| match b {
        b'0' => Some(b'o'),
        b'1' => Some(b'i'),
        b'3' => Some(b'e'),
        b'4' => Some(b'a'),
        b'5' => Some(b's'),
        b'7' => Some(b't'),
        _ => None,
    };
    let mut bytes = std::mem::take(text).into_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if !bytes[i].is_ascii_alphanumeric() {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && bytes[i].is_ascii_alphanumeric() {
            i += 1;
        }
        let word = &bytes[start..i];
        if word.iter().any(u8::is_ascii_alphabetic) && word.iter().any(|&b| leet(b).is_some()) {
            for b in &mut bytes[start..i] {
                if let Some(l) = leet(*b) {
                    *b = l;
                }
            }
        }
    }
    // Only ASCII digits were replaced by ASCII letters: still valid UTF-8.
    *text = String::from_utf8(bytes).expect("ASCII replaced by ASCII");
}

/// Folds only what hides a token without changing its case: full-width forms to ASCII
/// (`４１１１` to `4111`), other spaces to ASCII's and invisible characters dropped. `None` when there is
/// nothing to fold, which is the common case and costs one scan.
pub(crate) fn fold_width(text: &str) -> Option<Normalized> {
    let foldable =
        |c: char| ('\u{FF01}'..='\u{FF5E}').contains(&c) || is_invisible(c) || is_wide_space(c);
    if text.is_ascii() || !text.chars().any(foldable) {
        return None;
    }
    let mut out = String::with_capacity(text.len());
    let mut origin = Vec::with_capacity(text.len());
    for (i, c) in text.char_indices() {
        let range = (i, i + c.len_utf8());
        if is_invisible(c) {
            continue;
        }
        let c = if ('\u{FF01}'..='\u{FF5E}').contains(&c) {
            char::from_u32(c as u32 - 0xFEE0).unwrap_or(c)
        } else if is_wide_space(c) {
            ' '
        } else {
            c
        };
        let before = out.len();
        out.push(c);
        origin.extend(std::iter::repeat_n(range, out.len() - before));
    }
    Some(Normalized { text: out, origin })
}

/// A space other than ASCII's (no-break, en, em, thin, ideographic, ...), which would
/// otherwise split a number a pattern reads with plain spaces.
fn is_wide_space(c: char) -> bool {
    !c.is_ascii() && c.is_whitespace()
}

/// Runs `scan` on `text`, or on its width-folded form with the spans mapped back.
pub(crate) fn scan_folded(
    text: &str,
    scan: impl Fn(&str) -> Vec<any_core::Span>,
) -> Vec<any_core::Span> {
    match fold_width(text) {
        None => scan(text),
        Some(n) => scan(&n.text)
            .into_iter()
            .map(|s| {
                let (start, end) = n.original(s.start, s.end);
                any_core::Span { start, end, ..s }
            })
            .collect(),
    }
}

/// Joins runs of three or more single letters separated by single spaces (`i g n o r e` to
/// `ignore`), which no real word sequence in the patterns contains.
fn join_spelled_out(n: Normalized) -> Normalized {
    let b = n.text.as_bytes();
    let single = |i: usize| {
        b[i].is_ascii_alphanumeric()
            && (i == 0 || b[i - 1] == b' ')
            && (i + 1 == b.len() || b[i + 1] == b' ')
    };
    let mut drop = vec![false; b.len()];
    let mut i = 0;
    while i < b.len() {
        if single(i) {
            let mut j = i;
            let mut count = 1;
            while j + 2 < b.len() && b[j + 1] == b' ' && single(j + 2) {
                j += 2;
                count += 1;
            }
            if count >= 3 {
                (i + 1..j).step_by(2).for_each(|k| drop[k] = true);
            }
            i = j + 1;
        } else {
            i += 1;
        }
    }
    if !drop.contains(&true) {
        return n;
    }
    let mut text = String::with_capacity(b.len());
    let mut origin = Vec::with_capacity(b.len());
    // Dropped bytes are ASCII spaces, so what is kept stays valid UTF-8 in whole characters.
    let mut start = 0;
    for (k, &d) in drop.iter().enumerate() {
        if d {
            text.push_str(&n.text[start..k]);
            origin.extend_from_slice(&n.origin[start..k]);
            start = k + 1;
        }
    }
    text.push_str(&n.text[start..]);
    origin.extend_from_slice(&n.origin[start..]);
    Normalized { text, origin }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folds_evasions() {
        let n = normalize("IGNORE  the\u{200B}se \u{440}r\u{435}vious");
        assert_eq!(n.text, "ignore these previous");
        assert_eq!(normalize("ｉｇｎｏｒｅ").text, "ignore");
        assert_eq!(normalize("i g n o r e all").text, "ignore all");
        assert_eq!(normalize("a b c").text, "abc");
        assert_eq!(normalize("a b").text, "a b");
        assert_eq!(normalize("𝐢𝐠𝐧𝐨𝐫𝐞").text, "ignore");
        assert_eq!(
            normalize("\u{ED}GN\u{D6}R\u{1EB8} \u{F8}\u{142}d").text,
            "ignore old"
        );
        // Each folded letter maps back to its whole precomposed char.
        let n = normalize("a\u{E9}b");
        assert_eq!(n.text, "aeb");
        assert_eq!(n.original(1, 2), (1, 3));
        assert_eq!(normalize("한국어").text, "한국어");
    }

    #[test]
    fn maps_back_to_original_bytes() {
        let original = "Héllo, i g n o r e ×";
        let n = normalize(original);
        let at = n.text.find("ignore").unwrap();
        let (s, e) = n.original(at, at + "ignore".len());
        assert_eq!(&original[s..e], "i g n o r e");
    }
}
