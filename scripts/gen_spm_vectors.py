#!/usr/bin/env python3
"""A real SentencePiece vocabulary in a GGUF file, and llama.cpp's token ids on it.

    .venv-models/bin/python scripts/gen_spm_vectors.py SPM_MODEL [--out DIR]

SPM_MODEL is `test/test_model.model` from the `sentencepiece` 0.2.0 source package (a
1,000-piece unigram model the SentencePiece project trained for its own tests; Apache-2.0):

    .venv-models/bin/pip download --no-deps --no-binary :all: sentencepiece==0.2.0

It writes `gemma-spm.gguf`: a `gemma3` file with no tensors whose `tokenizer.ggml.*` metadata is
that vocabulary as llama.cpp's converter writes a SentencePiece model (`tokenizer.ggml.model =
llama`, every piece with its score and type), set up as Gemma's files are (no space prefix, a
BOS token added), plus what the test model lacks and Gemma's vocabulary has: the 256 byte
pieces `<0x00>`..`<0xFF>` for byte fallback, two control tokens (`<start_of_turn>`,
`<end_of_turn>`) and a user-defined one (`<mask>`), appended after the model's own pieces so
that those keep their ids. Then `spm.llamacpp.json`: for each of a set of texts, the ids
llama.cpp (`llama-cpp-python`, `Llama(vocab_only=True).tokenize`) gives with the BOS token and
plain text, and without it parsing special tokens; and the same with the space prefix on (a
second file, not kept: Llama's SentencePiece setting).
"""
import argparse
import hashlib
import importlib.metadata
import json
import os
import struct
import sys
import tempfile

import gguf

TEXTS = [
    "Hello world",
    "Hello world.",
    " Hello world",
    "  two leading spaces, three   inside and trailing  ",
    "The quick brown fox jumps over the lazy dog.",
    "line one\nline two\n\nline four",
    "\n",
    " ",
    "tab\there and a carriage return\r\n",
    "naïve café, déjà vu; Ærøskøbing",
    "日本語のテキスト",
    "emoji: 🙂👍🏽 and a rare sign ⍼",
    "numbers 1234567890 and 3.14159",
    "<start_of_turn>user\nHi there!<end_of_turn>\n<start_of_turn>model\n",
    "a <mask> token in the middle",
    "<s> and </s> spelled out",
    "quotes \"double\" and 'single' and (brackets) [square] {curly}",
    "URL-like: some.host/path?query=1&b=2#frag",
    "mixed CASE WoRdS and under_scores",
    "",
]


def pieces(path):
    """The pieces of a SentencePiece ModelProto: (text, score, type) in id order.

    A minimal reading of the protobuf wire format: field 1 of the model is a repeated piece
    message whose fields are 1 the text, 2 the score (float), 3 the type (enum, default 1).
    """
    data = open(path, "rb").read()

    def varint(b, i):
        r = s = 0
        while True:
            c = b[i]
            i += 1
            r |= (c & 0x7F) << s
            s += 7
            if c < 0x80:
                return r, i

    def fields(b):
        i = 0
        while i < len(b):
            key, i = varint(b, i)
            f, wire = key >> 3, key & 7
            if wire == 0:
                v, i = varint(b, i)
            elif wire == 1:
                v, i = b[i:i + 8], i + 8
            elif wire == 2:
                n, i = varint(b, i)
                v, i = b[i:i + n], i + n
            elif wire == 5:
                v, i = b[i:i + 4], i + 4
            else:
                sys.exit(f"{path}: wire type {wire} is not a SentencePiece model's")
            yield f, v

    out = []
    for f, v in fields(data):
        if f != 1:
            continue
        text, score, ty = None, 0.0, 1
        for g, w in fields(v):
            if g == 1:
                text = w.decode("utf-8")
            elif g == 2:
                score = struct.unpack("<f", w)[0]
            elif g == 3:
                ty = w
        out.append((text, score, ty))
    return out


def write(path, model_pieces, add_space_prefix):
    tokens = [p[0] for p in model_pieces]
    scores = [p[1] for p in model_pieces]
    # SentencePiece's piece types are GGUF's token types, number for number.
    types = [p[2] for p in model_pieces]
    for b in range(256):
        tokens.append(f"<0x{b:02X}>")
        scores.append(0.0)
        types.append(gguf.TokenType.BYTE)
    for text, ty in [("<start_of_turn>", gguf.TokenType.CONTROL),
                     ("<end_of_turn>", gguf.TokenType.CONTROL),
                     ("<mask>", gguf.TokenType.USER_DEFINED)]:
        tokens.append(text)
        scores.append(0.0)
        types.append(ty)
    w = gguf.GGUFWriter(path, "gemma3")
    w.add_name("SentencePiece test_model vocabulary (no weights)")
    w.add_context_length(512)
    w.add_embedding_length(64)
    w.add_block_count(1)
    w.add_feed_forward_length(128)
    w.add_head_count(4)
    w.add_head_count_kv(1)
    w.add_layer_norm_rms_eps(1e-6)
    w.add_tokenizer_model("llama")
    w.add_tokenizer_pre("default")
    w.add_token_list(tokens)
    w.add_token_scores(scores)
    w.add_token_types(types)
    w.add_unk_token_id(tokens.index("<unk>"))
    w.add_bos_token_id(tokens.index("<s>"))
    w.add_eos_token_id(tokens.index("</s>"))
    w.add_add_bos_token(True)
    w.add_add_eos_token(False)
    w.add_add_space_prefix(add_space_prefix)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def ids(path):
    from llama_cpp import Llama
    m = Llama(model_path=path, vocab_only=True, verbose=False)
    out = []
    for text in TEXTS:
        b = text.encode("utf-8")
        out.append({
            "text": text,
            "bos_plain": m.tokenize(b, add_bos=True, special=False),
            "special": m.tokenize(b, add_bos=False, special=True),
        })
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("spm_model")
    p.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                 "..", "any-llm-local", "tests", "data", "spm"))
    a = p.parse_args()
    model_pieces = pieces(a.spm_model)
    os.makedirs(a.out, exist_ok=True)
    path = os.path.join(a.out, "gemma-spm.gguf")
    write(path, model_pieces, add_space_prefix=False)
    with tempfile.TemporaryDirectory() as tmp:
        prefixed = os.path.join(tmp, "llama-spm.gguf")
        write(prefixed, model_pieces, add_space_prefix=True)
        with_prefix = ids(prefixed)
    import llama_cpp
    out = {
        "provenance": {
            "script": "scripts/gen_spm_vectors.py",
            "vocabulary": "test/test_model.model of the sentencepiece 0.2.0 source package "
                          "(Apache-2.0), sha256 "
                          + hashlib.sha256(open(a.spm_model, "rb").read()).hexdigest(),
            "gguf": importlib.metadata.version("gguf"),
            "llama_cpp_python": llama_cpp.__version__,
        },
        "no_space_prefix": ids(path),
        "space_prefix": with_prefix,
    }
    ref = os.path.join(a.out, "spm.llamacpp.json")
    with open(ref, "w") as fh:
        # One text per line, so a change shows as the texts it touches.
        fh.write("{\n" + f'"provenance":{json.dumps(out["provenance"])}')
        for key in ("no_space_prefix", "space_prefix"):
            rows = ",\n".join(json.dumps(r, ensure_ascii=False) for r in out[key])
            fh.write(f',\n"{key}":[\n{rows}\n]')
        fh.write("\n}\n")
    print(f"wrote {path} ({os.path.getsize(path)} bytes) and {ref}", file=sys.stderr)


if __name__ == "__main__":
    main()
