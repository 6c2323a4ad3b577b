#!/usr/bin/env python3
"""Writes bpe_tiny.json: small byte-level BPE vocabularies trained with HF `tokenizers`, one per
pre-tokenizer (gpt-2, llama-bpe, qwen2), and the ids `tokenizers` itself gives a set of tricky
texts, so BPE merging with each pre-tokenizer is checked against the reference
implementation without a model file.

Each tokenizer is built the way those models' tokenizer.json files are: a `Split` with the
model's regex (behavior "isolated"), then `ByteLevel` without its own regex; the Llama 3
one sets `ignore_merges`. Special tokens are control tokens (GGUF type 3).

Run from this folder:  python3 gen_bpe.py [path/to/gpl-3.txt]   (needs `pip install tokenizers`)
"""
import json
import os
import sys

from tokenizers import Regex, Tokenizer, models, pre_tokenizers, trainers

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_CORPUS = os.path.join(HERE, "reference/gpl-3.txt")
EXTRA = """Ceci est un texte en français : déjà, naïve, façade, où, très.
Das ist ein kleiner deutscher Text über Größe und Übung. 日本語のテキスト 😀
It's we're they'll I've he'd IT'S WE'RE 1234567 3.14159 $100 x+y=z
"""
SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
PATTERNS = {
    "gpt-2": r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+",
    "llama-bpe": r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
                 r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",
    "qwen2": r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
             r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",
}
TEXTS = [
    "Hello world! This is the GNU General Public License.",
    "It's, we're, they'll, I've, he'd, IT'S, WE'RE",
    "1 22 333 4444 55555 666666 1234567 3.14159",
    "naïve façade — déjà vu, Größe über",
    "日本語のテキスト and emoji 😀👍🏽",
    "line1\nline2\r\nline3\n\n\n  indented\ttabs\t\tend  ",
    "price: $1,234.56 + 7% = <tag> a|b ^~ `code` (parens) ...!!!",
    "<|im_start|>user\nhi<|im_end|>\n",
    "   ",
    "software software software freedom",
]


def build(name, pattern, corpus):
    tok = Tokenizer(models.BPE(ignore_merges=(name == "llama-bpe")))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(pattern), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    trainer = trainers.BpeTrainer(
        vocab_size=700,
        special_tokens=SPECIAL,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus.splitlines(keepends=True), trainer=trainer)
    model = json.loads(tok.to_str())["model"]
    vocab = sorted(model["vocab"].items(), key=lambda kv: kv[1])
    assert [i for _, i in vocab] == list(range(len(vocab)))
    merges = [m if isinstance(m, str) else " ".join(m) for m in model["merges"]]
    return {
        "tokens": [t for t, _ in vocab],
        "types": [3 if t in SPECIAL else 1 for t, _ in vocab],
        "merges": merges,
        "cases": [{"text": t, "ids": tok.encode(t, add_special_tokens=False).ids} for t in TEXTS],
    }


def main():
    corpus_path = sys.argv[1] if len(sys.argv) > 1 else DEFAULT_CORPUS
    with open(corpus_path, encoding="utf-8") as f:
        corpus = f.read() + EXTRA
    import tokenizers
    out = {"generator": f"tokenizers {tokenizers.__version__}"}
    out.update({name: build(name, p, corpus) for name, p in PATTERNS.items()})
    with open(os.path.join(HERE, "bpe_tiny.json"), "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False, separators=(",", ":"))
        f.write("\n")


if __name__ == "__main__":
    main()
