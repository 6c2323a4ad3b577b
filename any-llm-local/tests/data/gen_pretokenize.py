#!/usr/bin/env python3
"""Writes pretokenize.json: the expected splits of tricky texts for each pre-tokenizer.

The expected pieces come from the PyPI `regex` module running the exact Unicode patterns
llama.cpp lists for each `tokenizer.ggml.pre` (the HF tokenizers patterns, with `(?i:...)`
contractions spelled out). A pre-tokenizer with several patterns applies them in turn: each
pattern runs over every piece the previous one produced, and text it does not match stays a
piece of its own.

Run from this folder:  python3 gen_pretokenize.py   (needs `pip install regex`)
"""
import json

import regex

GPT2 = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)"
CONTRACTIONS = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])"
LLAMA3 = (CONTRACTIONS + r"|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
          r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2 = (CONTRACTIONS + r"|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
         r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")

PRE_TOKENIZERS = {
    "default": [r"[\p{P}\$\+<=>\^~\|]+", GPT2, r"\p{N}+", r"[0-9][0-9][0-9]"],
    "gpt-2": [GPT2],
    "llama-bpe": [LLAMA3],
    "qwen2": [QWEN2],
    "smollm": [r"\p{N}", GPT2],
}

TEXTS = [
    "Hello world!",
    "It's, we're, they'll, I've, he'd, you'M, WE'RE, 'tis 'xyz",
    "1 22 333 4444 55555 666666 1234567",
    "naïve façade — déjà vu, Ünïcödé",
    "e\u0301 combining a\u0308 marks",
    "日本語のテキスト、中文。한국어",
    "emoji 😀 ok 👍🏽 family 👨‍👩‍👧",
    "line1\nline2\r\nline3\n\n\nend",
    "  leading and trailing  ",
    "multiple   spaces\tand\t\ttabs \t mixed",
    "snake_case camelCase SCREAMING_CASE kebab-case",
    "price: $1,234.56 + 7% = <tag> a|b ^~ `code`",
    "(parens) [brackets] {braces} ...!!! ???",
    " \n x \n\n  y",
    "٣٤٥ Ⅻ ½ ²",
    "tab\tbefore\tletters\n\tindent",
    "nbsp\u00a0here\u3000ideographic\u2003em",
    "' apostrophe 's alone'",
    "",
]


def split(patterns, text):
    pieces = [text] if text else []
    for pattern in patterns:
        out = []
        for piece in pieces:
            at = 0
            for m in regex.finditer(pattern, piece):
                if m.start() > at:
                    out.append(piece[at:m.start()])
                if m.end() > m.start():
                    out.append(m.group())
                at = m.end()
            if at < len(piece):
                out.append(piece[at:])
        pieces = out
    return pieces


def main():
    cases = [
        {"pre": name, "text": text, "pieces": split(patterns, text)}
        for name, patterns in PRE_TOKENIZERS.items()
        for text in TEXTS
    ]
    with open("pretokenize.json", "w", encoding="utf-8") as f:
        json.dump({"generator": f"regex {regex.__version__}", "cases": cases}, f,
                  ensure_ascii=False, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
