//! SentencePiece-style BPE, the `llama` vocabulary type: pieces merge by score, and chars no
//! piece spells fall back to `<0xNN>` byte tokens.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;

use super::TokenType;
use super::vocab::Vocab;

/// The escaped space SentencePiece writes for ' ' (U+2581).
pub(crate) const SPACE: char = '\u{2581}';

#[derive(Debug, Clone, Copy)]
struct Symbol {
    start: usize,
    end: usize,
    prev: usize,
    next: usize,
    alive: bool,
}

/// A pair whose concatenation is a piece; the best score merges first, then the leftmost.
#[derive(Debug, Clone, Copy)]
struct Candidate {
    score: f32,
    left: usize,
    right: usize,
    len: usize,
}

impl PartialEq for Candidate {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Candidate {}
impl PartialOrd for Candidate {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Candidate {
    fn cmp(&self, other: &Self) -> Ordering {
        self.score
            .total_cmp(&other.score)
            .then_with(|| Reverse(self.left).cmp(&Reverse(other.left)))
    }
}

const NONE: usize = usize::MAX;

/// Whether the merges may produce `id`: control, byte and unused pieces are never spelled
/// from text, as in SentencePiece.
fn mergeable(vocab: &Vocab, id: u32) -> bool {
    matches!(
        vocab.token_type(id),
        TokenType::Normal | TokenType::UserDefined | TokenType::Undefined
    )
}

/// Encodes `text`, whose spaces are already escaped to `▁`, appending ids to `out`.
pub(crate) fn encode(vocab: &Vocab, text: &str, out: &mut Vec<u32>) {
    let mut symbols: Vec<Symbol> = Vec::with_capacity(text.len());
    for (i, (start, c)) in text.char_indices().enumerate() {
        symbols.push(Symbol {
            start,
            end: start + c.len_utf8(),
            prev: if i == 0 { NONE } else { i - 1 },
            next: i + 1,
            alive: true,
        });
    }
    let Some(last) = symbols.last_mut() else {
        return;
    };
    last.next = NONE;

    let mut heap = BinaryHeap::new();
    let candidate = |symbols: &[Symbol], left: usize, right: usize| {
        let (l, r) = (symbols[left], symbols[right]);
        let id = vocab
            .id(&text[l.start..r.end])
            .filter(|&id| mergeable(vocab, id))?;
        Some(Candidate {
            score: vocab.score(id),
            left,
            right,
            len: r.end - l.start,
        })
    };
    for i in 1..symbols.len() {
        heap.extend(candidate(&symbols, i - 1, i));
    }
    while let Some(c) = heap.pop() {
        let (l, r) = (symbols[c.left], symbols[c.right]);
        if !l.alive || !r.alive || l.next != c.right || r.end - l.start != c.len {
            continue;
        }
        symbols[c.left].end = r.end;
        symbols[c.left].next = r.next;
        symbols[c.right].alive = false;
        if r.next != NONE {
            symbols[r.next].prev = c.left;
        }
        if l.prev != NONE {
            heap.extend(candidate(&symbols, l.prev, c.left));
        }
        if r.next != NONE {
            heap.extend(candidate(&symbols, c.left, r.next));
        }
    }

    let mut i = 0;
    while i != NONE {
        let sym = symbols[i];
        let piece = &text[sym.start..sym.end];
        match vocab.id(piece).filter(|&id| mergeable(vocab, id)) {
            Some(id) => out.push(id),
            None => {
                let bytes: Option<Vec<u32>> = piece.bytes().map(|b| vocab.byte_token(b)).collect();
                match bytes {
                    Some(ids) => out.extend(ids),
                    // Without byte fallback an unspellable char is one unknown token.
                    None => out.extend(vocab.unk),
                }
            }
        }
        i = sym.next;
    }
}
