"""Writes the GGUF seeds of the `gguf` fuzz target (seeds/gguf/*.gguf): a file with every
metadata type, a tokenizer with a chat template, and a one-layer llama model of width 8.
Run from fuzz/: python3 seeds/make_gguf_seeds.py"""
import struct

U8, I8, U16, I16, U32, I32, F32, BOOL, STR, ARR, U64, I64, F64 = range(13)
F32_TENSOR = 0


def s(text):
    b = text.encode()
    return struct.pack("<Q", len(b)) + b


def value(ty, v):
    fmt = {U8: "B", I8: "b", U16: "H", I16: "h", U32: "I", I32: "i", F32: "f", BOOL: "?",
           U64: "Q", I64: "q", F64: "d"}
    if ty == STR:
        return s(v)
    if ty == ARR:
        item, items = v
        return struct.pack("<IQ", item, len(items)) + b"".join(value(item, x) for x in items)
    return struct.pack("<" + fmt[ty], v)


def gguf(kvs, tensors):
    out = b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(kvs))
    for key, ty, v in kvs:
        out += s(key) + struct.pack("<I", ty) + value(ty, v)
    data, offset = b"", 0
    for name, dims in tensors:
        out += s(name) + struct.pack("<I", len(dims)) + b"".join(struct.pack("<Q", d) for d in dims)
        out += struct.pack("<IQ", F32_TENSOR, offset)
        n = 1
        for d in dims:
            n *= d
        blob = b"".join(struct.pack("<f", ((i * 7) % 13 - 6) / 10) for i in range(n))
        blob += b"\0" * (-len(blob) % 32)
        data += blob
        offset += len(blob)
    out += b"\0" * (-len(out) % 32)
    return out + data


CHATML = ("{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + "
          "message['content'] + '<|im_end|>' + '\\n' }}{% endfor %}"
          "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")
TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"] + [chr(c) for c in range(33, 127)] + ["Ġ", "Ċ", "he", "ll", "hell", "hello"]
TYPES = [3, 3, 3] + [1] * (len(TOKENS) - 3)
TOKENIZER = [
    ("tokenizer.ggml.model", STR, "gpt2"),
    ("tokenizer.ggml.pre", STR, "smollm"),
    ("tokenizer.ggml.tokens", ARR, (STR, TOKENS)),
    ("tokenizer.ggml.token_type", ARR, (I32, TYPES)),
    ("tokenizer.ggml.merges", ARR, (STR, ["h e", "l l", "he ll", "hell o"])),
    ("tokenizer.ggml.bos_token_id", U32, 1),
    ("tokenizer.ggml.eos_token_id", U32, 2),
    ("tokenizer.chat_template", STR, CHATML),
]

every_type = gguf([
    ("general.name", STR, "seed"), ("u8", U8, 7), ("i8", I8, -7), ("u16", U16, 700),
    ("i16", I16, -700), ("u32", U32, 70000), ("i32", I32, -70000), ("f32", F32, 0.5),
    ("bool", BOOL, True), ("u64", U64, 1 << 40), ("i64", I64, -(1 << 40)), ("f64", F64, 0.25),
    ("nested", ARR, (ARR, [(U8, [1, 2]), (STR, ["a", "b"])])),
], [("t", [4, 2])])

d, ff, layers = 8, 16, 1
llama = [
    ("general.architecture", STR, "llama"),
    ("llama.embedding_length", U32, d), ("llama.attention.head_count", U32, 2),
    ("llama.attention.head_count_kv", U32, 1), ("llama.block_count", U32, layers),
    ("llama.feed_forward_length", U32, ff), ("llama.context_length", U32, 64),
    ("llama.attention.layer_norm_rms_epsilon", F32, 1e-5), ("llama.rope.freq_base", F32, 10000.0),
] + TOKENIZER
n_vocab, kv = len(TOKENS), d // 2
tensors = [("token_embd.weight", [d, n_vocab]), ("output_norm.weight", [d])]
for i in range(layers):
    b = f"blk.{i}."
    tensors += [(b + "attn_norm.weight", [d]), (b + "attn_q.weight", [d, d]),
                (b + "attn_k.weight", [d, kv]), (b + "attn_v.weight", [d, kv]),
                (b + "attn_output.weight", [d, d]), (b + "ffn_norm.weight", [d]),
                (b + "ffn_gate.weight", [d, ff]), (b + "ffn_up.weight", [d, ff]),
                (b + "ffn_down.weight", [ff, d])]

for name, blob in [("every_type", every_type), ("tokenizer", gguf(TOKENIZER, [])),
                   ("llama", gguf(llama, tensors))]:
    with open(f"seeds/gguf/{name}.gguf", "wb") as f:
        f.write(blob)
