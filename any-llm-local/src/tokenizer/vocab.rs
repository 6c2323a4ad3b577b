//! The token table shared by both vocabulary types.

use std::collections::HashMap;

use super::TokenType;

/// Token texts, types and scores, and the reverse map from text to id.
#[derive(Debug)]
pub(crate) struct Vocab {
    pub(crate) texts: Vec<String>,
    pub(crate) types: Vec<TokenType>,
    pub(crate) scores: Vec<f32>,
    by_text: HashMap<String, u32>,
    /// The unknown token, emitted where nothing else can spell the input.
    pub(crate) unk: Option<u32>,
    /// The `<0xNN>` tokens of SentencePiece vocabularies with byte fallback.
    byte_tokens: [Option<u32>; 256],
}

impl Vocab {
    pub(crate) fn new(texts: Vec<String>, types: Vec<TokenType>, scores: Vec<f32>) -> Self {
        let mut by_text = HashMap::with_capacity(texts.len());
        for (id, t) in texts.iter().enumerate() {
            // Duplicates keep the last id, as llama.cpp's map does.
            by_text.insert(t.clone(), id as u32);
        }
        let mut byte_tokens = [None; 256];
        for (b, slot) in byte_tokens.iter_mut().enumerate() {
            *slot = by_text.get(&format!("<0x{b:02X}>")).copied();
        }
        Self {
            texts,
            types,
            scores,
            by_text,
            unk: None,
            byte_tokens,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.texts.len()
    }

    pub(crate) fn id(&self, text: &str) -> Option<u32> {
        self.by_text.get(text).copied()
    }

    pub(crate) fn token_type(&self, id: u32) -> TokenType {
        self.types
            .get(id as usize)
            .copied()
            .unwrap_or(TokenType::Normal)
    }

    pub(crate) fn score(&self, id: u32) -> f32 {
        self.scores.get(id as usize).copied().unwrap_or(0.0)
    }

    pub(crate) fn byte_token(&self, byte: u8) -> Option<u32> {
        self.byte_tokens[usize::from(byte)]
    }
}
