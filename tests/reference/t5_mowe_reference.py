#!/usr/bin/python3
"""PyTorch reference of the tiny MoWE model (configs/tiny.textproto), written independently of
the C++ code from the T5.1.1 and MoWE definitions:

  * T5.1.1: pre-norm blocks, RMSNorm without mean or bias, gated-GELU FFN (tanh GELU), attention
    without 1/sqrt(d_kv) scaling, bucketed relative position bias (bidirectional in the encoder,
    causal in the decoder, one table per stack shared by its layers, none in cross-attention),
    shared input embedding, untied output projection, cross-entropy with z-loss;
  * MoWE: at the configured blocks the FFN is replaced by y = gelu(x Wi[e]) Wo[e] with e the
    expert of the token's routing id; unrouted ids give y = 0; one set of experts shared by all
    MoWE layers.

Runs in float64 with autograd and writes weights, inputs, routing table, logits, loss and every
parameter gradient to tests/reference/tiny_reference.bin (format below), which
tests/model/reference_test.cc compares with the C++ model. Needs Debian's python3-torch; not run
in CI (the output file is committed):

  /usr/bin/python3 tests/reference/t5_mowe_reference.py

File format (little endian): b"MOWEREF\\0", u32 version, u32 tensor count, then per tensor:
u32 name length, name (utf-8), u32 dtype (0 = f64, 1 = i32), u32 ndim, i64 dims[ndim], data.
"""

import math
import os
import struct

import torch

VERSION = 1
# configs/tiny.textproto
D_MODEL, HEADS, D_KV, D_FF = 16, 2, 8, 32
ENC_LAYERS, DEC_LAYERS, VOCAB = 2, 2, 64
NUM_BUCKETS, MAX_DISTANCE, EPS = 8, 16, 1e-6
ENC_MOWE, DEC_MOWE = [1], [1]
ROUTING_VOCAB = 160
EXPERT_BUCKETS = [(28, 16), (16, 8)]  # (experts, width): 2 blocks x 14 and 2 blocks x 8
# The reference's own batch.
BATCH, ENC_LEN, DEC_LEN, Z_LOSS = 2, 7, 5, 1e-3

gen = torch.Generator().manual_seed(20231117)
tensors = {}  # name -> tensor, in file order


def normal(shape, std):
    return (torch.randn(shape, generator=gen, dtype=torch.float64) * std).requires_grad_()


def parameter(name, shape, std):
    tensors[name] = normal(shape, std)
    return tensors[name]


def rms_norm(x, scale):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + EPS) * scale


def gelu(x):
    return torch.nn.functional.gelu(x, approximate="tanh")


def relative_bucket(relative_position, bidirectional):
    """T5's _relative_position_bucket (mesh_tensorflow / Hugging Face)."""
    num_buckets, ret = NUM_BUCKETS, 0
    n = -relative_position
    if bidirectional:
        num_buckets //= 2
        ret += (n < 0).long() * num_buckets
        n = n.abs()
    else:
        n = n.clamp(min=0)
    max_exact = num_buckets // 2
    large = max_exact + (
        torch.log(n.float() / max_exact) / math.log(MAX_DISTANCE / max_exact)
        * (num_buckets - max_exact)).long()
    large = large.clamp(max=num_buckets - 1)
    return ret + torch.where(n < max_exact, n, large)


def position_bias(table, length, bidirectional):
    pos = torch.arange(length)
    buckets = relative_bucket(pos[None, :] - pos[:, None], bidirectional)  # [T, S]
    return table[buckets].permute(2, 0, 1)  # [H, T, S]


def attention(prefix, x, memory, bias, key_valid, causal):
    p = {k: tensors[f"{prefix}.{k}"] for k in ("norm", "q", "k", "v", "o")}
    h = rms_norm(x, p["norm"])
    src = h if memory is None else memory
    b, t, s = x.shape[0], x.shape[1], src.shape[1]
    q = (h @ p["q"]).view(b, t, HEADS, D_KV).transpose(1, 2)
    k = (src @ p["k"]).view(b, s, HEADS, D_KV).transpose(1, 2)
    v = (src @ p["v"]).view(b, s, HEADS, D_KV).transpose(1, 2)
    scores = q @ k.transpose(-1, -2)  # no 1/sqrt(d_kv): T5 folds it into the initialisation
    if bias is not None:
        scores = scores + bias[None]
    masked = (key_valid[:, None, None, :] == 0).expand(b, HEADS, t, s)
    if causal:
        masked = masked | torch.triu(torch.ones(t, s, dtype=torch.bool), 1)[None, None]
    scores = scores + masked.double() * -1e9
    out = torch.softmax(scores, -1) @ v
    return x + out.transpose(1, 2).reshape(b, t, HEADS * D_KV) @ p["o"]


def dense_ffn(prefix, x):
    h = rms_norm(x, tensors[f"{prefix}.norm"])
    hidden = gelu(h @ tensors[f"{prefix}.wi_0"]) * (h @ tensors[f"{prefix}.wi_1"])
    return x + hidden @ tensors[f"{prefix}.wo"]


def mowe_ffn(prefix, x, routing, bucket_of, expert_of):
    h = rms_norm(x, tensors[f"{prefix}.norm"])
    rows = []
    for token, rid in zip(h.reshape(-1, D_MODEL), routing.reshape(-1).tolist()):
        b, e = bucket_of[rid].item(), expert_of[rid].item()
        if b < 0:
            rows.append(torch.zeros(D_MODEL, dtype=torch.float64))
            continue
        wi, wo = tensors[f"mowe.bucket{b}.wi"][e], tensors[f"mowe.bucket{b}.wo"][e]
        rows.append(gelu(token @ wi) @ wo)
    return x + torch.stack(rows).view_as(x)


def stack(name, x, layers, mowe_layers, valid, routing, memory, memory_valid, table):
    decoder = name == "decoder"
    bias = position_bias(tensors[f"{name}.relative_attention_bias"], x.shape[1], not decoder)
    for i in range(layers):
        prefix = f"{name}.block{i}"
        x = attention(f"{prefix}.self_attention", x, None, bias, valid, decoder)
        if decoder:
            x = attention(f"{prefix}.cross_attention", x, memory, None, memory_valid, False)
        if i in mowe_layers:
            x = mowe_ffn(f"{prefix}.mowe", x, routing, *table)
        else:
            x = dense_ffn(f"{prefix}.ffn", x)
    return rms_norm(x, tensors[f"{name}.final_norm"])


def make_parameters():
    c, hd = D_MODEL, HEADS * D_KV
    parameter("shared.embedding", (VOCAB, c), 1.0)
    parameter("decoder.lm_head", (c, VOCAB), c ** -0.5)
    for name, layers, mowe in (("encoder", ENC_LAYERS, ENC_MOWE), ("decoder", DEC_LAYERS, DEC_MOWE)):
        parameter(f"{name}.relative_attention_bias", (NUM_BUCKETS, HEADS), 0.5)
        parameter(f"{name}.final_norm", (c,), 0.2).data += 1.0
        for i in range(layers):
            parts = ["self_attention"] + (["cross_attention"] if name == "decoder" else [])
            for part in parts:
                prefix = f"{name}.block{i}.{part}"
                parameter(f"{prefix}.norm", (c,), 0.2).data += 1.0
                for w in ("q", "k", "v"):
                    parameter(f"{prefix}.{w}", (c, hd), c ** -0.5)
                parameter(f"{prefix}.o", (hd, c), hd ** -0.5)
            if i in mowe:
                parameter(f"{name}.block{i}.mowe.norm", (c,), 0.2).data += 1.0
            else:
                prefix = f"{name}.block{i}.ffn"
                parameter(f"{prefix}.norm", (c,), 0.2).data += 1.0
                parameter(f"{prefix}.wi_0", (c, D_FF), c ** -0.5)
                parameter(f"{prefix}.wi_1", (c, D_FF), c ** -0.5)
                parameter(f"{prefix}.wo", (D_FF, c), D_FF ** -0.5)
    for b, (experts, width) in enumerate(EXPERT_BUCKETS):
        parameter(f"mowe.bucket{b}.wi", (experts, c, width), c ** -0.5)
        parameter(f"mowe.bucket{b}.wo", (experts, width, c), width ** -0.5)


def make_routing_table():
    """Ids 0..3 unrouted (the most frequent), then ids spread over both buckets' experts, with
    several ids sharing an expert in bucket 1; the last ids are unrouted (beyond the buckets)."""
    bucket_of = torch.full((ROUTING_VOCAB,), -1, dtype=torch.int32)
    expert_of = torch.full((ROUTING_VOCAB,), -1, dtype=torch.int32)
    for rid in range(4, 32):
        bucket_of[rid], expert_of[rid] = 0, rid - 4
    for rid in range(32, ROUTING_VOCAB - 8):
        bucket_of[rid], expert_of[rid] = 1, (rid * 7) % EXPERT_BUCKETS[1][0]
    return bucket_of, expert_of


def make_inputs():
    def ids(high, length):
        return torch.randint(1, high, (BATCH, length), generator=gen, dtype=torch.int32)
    enc_valid = torch.ones(BATCH, ENC_LEN, dtype=torch.int32)
    enc_valid[1, -2:] = 0
    dec_valid = torch.ones(BATCH, DEC_LEN, dtype=torch.int32)
    dec_valid[0, -1] = 0
    inputs = {
        "enc_ids": ids(VOCAB, ENC_LEN) * enc_valid, "enc_valid": enc_valid,
        "enc_routing": torch.randint(0, ROUTING_VOCAB, (BATCH, ENC_LEN), generator=gen,
                                     dtype=torch.int32),
        "dec_ids": ids(VOCAB, DEC_LEN) * dec_valid, "dec_valid": dec_valid,
        "dec_routing": torch.randint(0, ROUTING_VOCAB, (BATCH, DEC_LEN), generator=gen,
                                     dtype=torch.int32),
        "targets": ids(VOCAB, DEC_LEN) * dec_valid,
    }
    inputs["weights"] = dec_valid.double()
    return inputs


def forward(inputs, table):
    emb = tensors["shared.embedding"]
    enc = stack("encoder", emb[inputs["enc_ids"].long()], ENC_LAYERS, ENC_MOWE,
                inputs["enc_valid"], inputs["enc_routing"].long(), None, None, table)
    dec = stack("decoder", emb[inputs["dec_ids"].long()], DEC_LAYERS, DEC_MOWE,
                inputs["dec_valid"], inputs["dec_routing"].long(), enc, inputs["enc_valid"], table)
    logits = dec @ tensors["decoder.lm_head"]
    lse = torch.logsumexp(logits, -1)
    target_logit = logits.gather(-1, inputs["targets"].long()[..., None])[..., 0]
    loss = (inputs["weights"] * (lse - target_logit + Z_LOSS * lse ** 2)).sum()
    return logits, loss


def write(path, entries):
    with open(path, "wb") as f:
        f.write(b"MOWEREF\0" + struct.pack("<II", VERSION, len(entries)))
        for name, t in entries:
            t = t.detach().contiguous()
            dtype = 0 if t.dtype == torch.float64 else 1
            t = t.double() if dtype == 0 else t.int()
            raw = name.encode()
            f.write(struct.pack("<I", len(raw)) + raw + struct.pack("<II", dtype, t.dim()))
            f.write(struct.pack(f"<{t.dim()}q", *t.shape))
            f.write(t.numpy().astype("<f8" if dtype == 0 else "<i4").tobytes())


def main():
    make_parameters()
    table = make_routing_table()
    inputs = make_inputs()
    logits, loss = forward(inputs, table)
    loss.backward()
    entries = [("meta.dims", torch.tensor([D_MODEL, HEADS, D_KV, D_FF, ENC_LAYERS, DEC_LAYERS,
                                           VOCAB, NUM_BUCKETS, MAX_DISTANCE, ROUTING_VOCAB],
                                          dtype=torch.int32)),
               ("meta.z_loss", torch.tensor([Z_LOSS], dtype=torch.float64)),
               ("routing.bucket_of", table[0]), ("routing.expert_of", table[1])]
    entries += [(f"input.{k}", v) for k, v in inputs.items()]
    entries += [(f"param.{k}", v) for k, v in tensors.items()]
    entries += [("output.logits", logits.reshape(-1, VOCAB)),
                ("output.loss", loss.reshape(1))]
    entries += [(f"grad.{k}", v.grad) for k, v in tensors.items()]
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "tiny_reference.bin")
    write(out, entries)
    print(f"wrote {out}: loss {loss.item():.12f}, {len(entries)} tensors")


if __name__ == "__main__":
    main()
