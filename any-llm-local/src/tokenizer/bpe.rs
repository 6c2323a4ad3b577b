//! Byte-level BPE, the `gpt2` vocabulary type: GPT-2's byte↔char map and merges applied by rank.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

use super::TokenType;
use super::pretokenize::PreTokenizer;
use super::vocab::Vocab;

/// The char GPT-2's byte-level alphabet writes for `byte`: printable Latin-1 bytes stand for
/// themselves, the others are moved past U+00FF in byte order so no vocabulary text holds a
/// control char or a space.
pub(crate) fn byte_to_char(byte: u8) -> char {
    let b = u32::from(byte);
    let shifted = match byte {
        0x21..=0x7e | 0xa1..=0xac | 0xae..=0xff => return char::from(byte),
        0x00..=0x20 => b,
        0x7f..=0xa0 => b - 0x7f + 0x21,
        0xad => 0x43,
    };
    char::from_u32(0x100 + shifted).unwrap_or(char::REPLACEMENT_CHARACTER)
}

/// The byte `c` stands for in GPT-2's alphabet, if it is one of its 256 chars.
pub(crate) fn char_to_byte(c: char) -> Option<u8> {
    let u = u32::from(c);
    match u {
        0x21..=0x7e | 0xa1..=0xac | 0xae..=0xff => u8::try_from(u).ok(),
        0x100..=0x120 => u8::try_from(u - 0x100).ok(),
        0x121..=0x142 => u8::try_from(u - 0x121 + 0x7f).ok(),
        0x143 => Some(0xad),
        _ => None,
    }
}

/// Appends the byte-level spelling of `bytes` to `out`.
pub(crate) fn encode_bytes(bytes: &[u8], out: &mut String) {
    out.extend(bytes.iter().map(|&b| byte_to_char(b)));
}

/// The merge table and what a word's encoding needs from the vocabulary.
#[derive(Debug)]
pub(crate) struct Bpe {
    pub(crate) pre: PreTokenizer,
    /// `(left id, right id)` packed into a u64 → `(rank, merged id)`.
    merges: HashMap<u64, (u32, u32)>,
    /// The token of each byte's single-char spelling.
    byte_tokens: [Option<u32>; 256],
}

fn pair_key(left: u32, right: u32) -> u64 {
    (u64::from(left) << 32) | u64::from(right)
}

/// One merge rule split into its two pieces.
pub(crate) fn split_merge(rule: &str) -> Option<(&str, &str)> {
    // The first piece is never empty, so the separator is searched from the second byte on:
    // a vocabulary whose pieces hold literal spaces still parses.
    let first = rule.chars().next()?.len_utf8();
    let pos = rule[first..].find(' ')? + first;
    Some((&rule[..pos], &rule[pos + 1..]))
}

/// Scratch space reused across the words of one `encode` call.
#[derive(Debug, Default)]
pub(crate) struct Scratch {
    symbols: Vec<Symbol>,
    heap: BinaryHeap<Reverse<Candidate>>,
    text: String,
}

#[derive(Debug, Clone, Copy)]
struct Symbol {
    id: u32,
    prev: usize,
    next: usize,
    alive: bool,
}

/// A pair that may merge, ordered by rank then position (leftmost first among equal ranks).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Candidate {
    rank: u32,
    left: usize,
    right: usize,
    left_id: u32,
    right_id: u32,
    merged: u32,
}

const NONE: usize = usize::MAX;
const NO_TOKEN: u32 = u32::MAX;

impl Bpe {
    /// Builds the merge table; rules whose pieces or result are not tokens are skipped, as
    /// they could never apply.
    pub(crate) fn new(vocab: &Vocab, merges: &[String], pre: PreTokenizer) -> super::Result<Self> {
        let mut table = HashMap::with_capacity(merges.len());
        let mut skipped = 0usize;
        let mut joined = String::new();
        for (index, rule) in merges.iter().enumerate() {
            let (left, right) =
                split_merge(rule).ok_or_else(|| super::TokenizerError::BadMerge {
                    index,
                    merge: rule.clone(),
                })?;
            joined.clear();
            joined.push_str(left);
            joined.push_str(right);
            let ids = (vocab.id(left), vocab.id(right), vocab.id(&joined));
            let (Some(l), Some(r), Some(m)) = ids else {
                skipped += 1;
                continue;
            };
            let rank = u32::try_from(index).unwrap_or(u32::MAX);
            table.entry(pair_key(l, r)).or_insert((rank, m));
        }
        if skipped > 0 {
            tracing::debug!(skipped, "BPE merges whose pieces are not in the vocabulary");
        }
        let mut byte_tokens = [None; 256];
        let mut buf = [0u8; 4];
        for (b, slot) in byte_tokens.iter_mut().enumerate() {
            let c = byte_to_char(b as u8);
            *slot = vocab.id(c.encode_utf8(&mut buf));
        }
        Ok(Self {
            pre,
            merges: table,
            byte_tokens,
        })
    }

    /// Encodes one pre-tokenized word (raw bytes) and appends its ids to `out`.
    pub(crate) fn encode_word(
        &self,
        vocab: &Vocab,
        word: &[u8],
        out: &mut Vec<u32>,
        s: &mut Scratch,
    ) {
        if word.is_empty() {
            return;
        }
        if self.pre.ignores_merges() {
            s.text.clear();
            encode_bytes(word, &mut s.text);
            if let Some(id) = vocab.id(&s.text) {
                out.push(id);
                return;
            }
        }
        s.symbols.clear();
        s.heap.clear();
        let n = word.len();
        for (i, &b) in word.iter().enumerate() {
            s.symbols.push(Symbol {
                id: self.byte_tokens[usize::from(b)].unwrap_or(NO_TOKEN),
                prev: if i == 0 { NONE } else { i - 1 },
                next: if i + 1 == n { NONE } else { i + 1 },
                alive: true,
            });
        }
        for i in 1..n {
            self.push_candidate(s, i - 1, i);
        }
        while let Some(Reverse(c)) = s.heap.pop() {
            let left = s.symbols[c.left];
            let right = s.symbols[c.right];
            let current = left.alive
                && right.alive
                && left.next == c.right
                && left.id == c.left_id
                && right.id == c.right_id;
            if !current {
                continue;
            }
            s.symbols[c.left].id = c.merged;
            s.symbols[c.left].next = right.next;
            s.symbols[c.right].alive = false;
            if right.next != NONE {
                s.symbols[right.next].prev = c.left;
            }
            if left.prev != NONE {
                self.push_candidate(s, left.prev, c.left);
            }
            if right.next != NONE {
                self.push_candidate(s, c.left, right.next);
            }
        }
        let mut i = 0;
        while i != NONE {
            let sym = s.symbols[i];
            if sym.id != NO_TOKEN {
                out.push(sym.id);
            } else if let Some(unk) = vocab
                .unk
                .filter(|&u| vocab.token_type(u) == TokenType::Unknown)
            {
                // A byte the vocabulary has no token for. Only a real unknown token stands in
                // for it: SmolLM2 names `<|endoftext|>` as its unknown token, and a control
                // byte in a message must not end the text. Otherwise the byte is dropped, as
                // llama.cpp does.
                out.push(unk);
            }
            i = sym.next;
        }
    }

    fn push_candidate(&self, s: &mut Scratch, left: usize, right: usize) {
        let (left_id, right_id) = (s.symbols[left].id, s.symbols[right].id);
        if left_id == NO_TOKEN || right_id == NO_TOKEN {
            return;
        }
        if let Some(&(rank, merged)) = self.merges.get(&pair_key(left_id, right_id)) {
            s.heap.push(Reverse(Candidate {
                rank,
                left,
                right,
                left_id,
                right_id,
                merged,
            }));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_map_is_a_bijection_onto_gpt2_chars() {
        let mut seen = std::collections::HashSet::new();
        for b in 0..=255u8 {
            let c = byte_to_char(b);
            assert!(seen.insert(c));
            assert_eq!(char_to_byte(c), Some(b));
        }
        assert_eq!(byte_to_char(b' '), 'Ġ');
        assert_eq!(byte_to_char(b'\n'), 'Ċ');
        assert_eq!(byte_to_char(0xad), 'Ń');
    }

    #[test]
    fn merge_rules_split_at_the_first_inner_space() {
        assert_eq!(split_merge("Ġ t"), Some(("Ġ", "t")));
        assert_eq!(split_merge("  x"), Some((" ", "x")));
        assert_eq!(split_merge("ab"), None);
        assert_eq!(split_merge(""), None);
    }
}
