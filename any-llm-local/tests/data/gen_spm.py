#!/usr/bin/env python3
"""Writes spm_tiny.json: a small SentencePiece BPE vocabulary and the ids SentencePiece itself
gives a set of texts, so the `llama` tokenizer is checked against the reference
implementation without a model file.

The model is trained here, in seconds, on the GPL v3 text from the shared reference folder
plus a few lines of other scripts, with identity normalisation (llama.cpp applies none),
whitespace kept as is, a dummy-prefix space and byte fallback. The JSON holds each piece's
text, score and GGUF token type, and the expected ids (no BOS/EOS).

Run from this folder:  python3 gen_spm.py [path/to/gpl-3.txt]   (needs `pip install sentencepiece`)
"""
import io
import json
import os
import sys

import sentencepiece as spm

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_CORPUS = os.path.join(HERE, "reference/gpl-3.txt")
USER_DEFINED = ["<|tool|>"]
EXTRA = """Ceci est un texte en français : déjà, naïve, façade, où, très.
Das ist ein kleiner deutscher Text über Größe und Übung.
Esto es un texto en español: año, niño, canción.
"""
TEXTS = [
    "Hello world",
    "the GNU General Public License, version 3",
    "  two leading spaces and  double  spaces ",
    "déjà vu, naïve façade",
    "Größe über alles",
    "日本語のテキスト",
    "emoji 😀 ok",
    "line1\nline2\ttabbed",
    "copyright 2007 Free Software Foundation",
    "a<|tool|>b",
    "~^`{}|\\",
    "",
]

# GGUF token types (llama.cpp's llama_token_type).
NORMAL, UNKNOWN, CONTROL, USER_DEFINED_TYPE, UNUSED, BYTE = 1, 2, 3, 4, 5, 6


def main():
    corpus_path = sys.argv[1] if len(sys.argv) > 1 else DEFAULT_CORPUS
    with open(corpus_path, encoding="utf-8") as f:
        corpus = f.read() + EXTRA
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(corpus.splitlines()),
        model_writer=model,
        model_type="bpe",
        vocab_size=1200,
        character_coverage=1.0,
        byte_fallback=True,
        normalization_rule_name="identity",
        remove_extra_whitespaces=False,
        add_dummy_prefix=True,
        split_digits=True,
        user_defined_symbols=USER_DEFINED,
        minloglevel=2,
    )
    sp = spm.SentencePieceProcessor(model_proto=model.getvalue())
    pieces = []
    for i in range(sp.get_piece_size()):
        piece = sp.id_to_piece(i)
        if sp.is_unknown(i):
            ty = UNKNOWN
        elif sp.is_control(i):
            ty = CONTROL
        elif sp.is_byte(i):
            ty = BYTE
        elif sp.is_unused(i):
            ty = UNUSED
        elif piece in USER_DEFINED:
            ty = USER_DEFINED_TYPE
        else:
            ty = NORMAL
        pieces.append([piece, sp.get_score(i), ty])
    cases = [{"text": t, "ids": sp.encode(t)} for t in TEXTS]
    out = {
        "generator": f"sentencepiece {spm.__version__}",
        "bos": sp.bos_id(), "eos": sp.eos_id(), "unk": sp.unk_id(),
        "pieces": pieces,
        "cases": cases,
    }
    with open(os.path.join(HERE, "spm_tiny.json"), "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False, separators=(",", ":"))
        f.write("\n")


if __name__ == "__main__":
    main()
