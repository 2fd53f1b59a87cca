#!/usr/bin/python3
"""The PyTorch baseline of mowe_bench_step: the same T5.1.1 / MoWE model trained on the same
global batches (the file `mowe_bench_step --dump-batches` writes: token ids, masks, each token's
bucket and expert), written for the CPU as a performance-minded PyTorch user would:

  * fused Q/K/V (and cross K/V) and gated-FFN products, one position bias plus mask per stack and
    step, attention as batched matrix products;
  * MoWE layers without Python loops over tokens or experts: tokens grouped by expert once per
    batch (as the trainer's loader thread does, off the step), experts of similar load padded
    together into power-of-two capacity classes, so each bucket is a few gathers and two bmm per
    class, and the results scattered back with index_add;
  * AdamW with foreach=True (fused exists only for CUDA in torch 1.13), global-norm clipping;
  * torch.set_num_threads per rank; DistributedDataParallel over gloo when there are several
    ranks (all parameters replicated and their gradients allreduced: expert parallelism is not
    something DDP offers).

Run with Debian's python3 (python3-torch), alone or under mpirun (ranks from Open MPI's
environment, rendezvous on 127.0.0.1):

  mpirun -np 2 /usr/bin/python3 tests/bench/t5_torch_baseline.py --batches B.safetensors \
      --warmup 3 --steps 10 [--threads 1]
  /usr/bin/python3 tests/bench/t5_torch_baseline.py --batches B --check --weights W.safetensors

Prints real tokens/s (padding excluded), the mean step time split into forward, backward
(DDP's allreduce included: it overlaps backward and is not separated) and optimizer, model FLOPs
per step counted from first principles exactly as the trainer counts them, MFU against a 1024^3
sgemm peak measured in the same run by every rank at once (before and after the steps, the
better), peak RSS per rank, and one JSON line
starting with "BENCH_STEP ". --check prints the parameter count, each batch's FLOPs next to the
trainer's, and the loss of the --weights parameters on the first batch, as JSON ("CHECK ").
"""

import argparse
import json
import math
import os
import resource
import struct
import sys
import time

import torch
import torch.nn.functional as F

# ---- files ------------------------------------------------------------------------------------
DTYPES = {"F32": torch.float32, "F64": torch.float64, "I32": torch.int32, "I64": torch.int64}


def read_safetensors(path):
    """{name: tensor}, metadata. The format: u64 header length, JSON header, raw data."""
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    meta = header.pop("__metadata__", {})
    data = memoryview(raw)[8 + n:]
    out = {}
    for name, t in header.items():
        begin, end = t["data_offsets"]
        dtype = DTYPES[t["dtype"]]
        flat = torch.frombuffer(bytearray(data[begin:end]), dtype=dtype) if end > begin else \
            torch.zeros(0, dtype=dtype)
        out[name] = flat.reshape(t["shape"])
    return out, meta


# ---- the configuration ------------------------------------------------------------------------
class Dims:
    """The fields of the trainer's resolved config (JSON in the dump's metadata) the model uses."""

    def __init__(self, cfg):
        m, w, t = cfg["model"], cfg["model"]["mowe"], cfg["training"]
        self.d, self.heads, self.d_kv, self.d_ff = m["d_model"], m["num_heads"], m["d_kv"], m["d_ff"]
        self.hd = self.heads * self.d_kv
        self.enc_layers, self.dec_layers = m["num_encoder_layers"], m["num_decoder_layers"]
        self.vocab = m["vocab_size"]
        self.num_buckets = m["relative_attention_num_buckets"]
        self.max_distance = m["relative_attention_max_distance"]
        self.eps = m["layer_norm_epsilon"]
        self.enc_mowe, self.dec_mowe = list(w["encoder_layers"]), list(w["decoder_layers"])
        self.experts = []  # (experts, width) per bucket
        if self.enc_mowe or self.dec_mowe:
            # A bucket's form is its own expert_activation, else the layer's (model/expert_form.h).
            forms = [b.get("expert_activation", w["expert_activation"]) for b in w["buckets"]]
            bad = [f"model.mowe.buckets[{i}] is {f}" for i, f in enumerate(forms) if f != "GELU"]
            if bad:
                raise SystemExit("the baseline implements GELU (two-matrix) experts in every "
                                 "bucket only; " + ", ".join(bad))
            if not w["share_expert_parameters"]:
                raise SystemExit("the baseline implements shared experts only "
                                 "(model.mowe.share_expert_parameters is false)")
            self.experts = [(b["num_blocks"] * b["experts_per_block"], b["expert_d_ff"])
                            for b in w["buckets"]]
        self.z_loss = t["z_loss"]
        self.lr, self.weight_decay = t["learning_rate"], t["weight_decay"]
        self.betas, self.adam_eps = (t["adam_beta1"], t["adam_beta2"]), t["adam_eps"]
        self.clip = t["grad_clip_norm"]
        if t["optimizer"] != "ADAMW":
            raise SystemExit("the baseline implements AdamW only")

    def flops_per_token(self, input_length, target_length):
        """Forward FLOPs per real token, 2 per multiply-add: every weight a token meets, q.k and
        p.v over the configured lengths, cross-attention K/V once per encoder token and decoder
        block, the output projection per decoder token; MoWE blocks count their experts apart."""
        d, hd, f = self.d, self.hd, self.d_ff
        enc = 0
        for i in range(self.enc_layers):
            enc += 2 * 4 * d * hd + 4 * hd * input_length
            enc += 0 if i in self.enc_mowe else 2 * 3 * d * f
        enc += self.dec_layers * 2 * 2 * d * hd  # cross-attention K and V of each encoder token
        dec = 2 * d * self.vocab
        for i in range(self.dec_layers):
            dec += 2 * 4 * d * hd + 4 * hd * target_length  # self-attention
            dec += 2 * 2 * d * hd + 4 * hd * input_length  # cross-attention Q, O and scores
            dec += 0 if i in self.dec_mowe else 2 * 3 * d * f
        return enc, dec

    def step_flops(self, batch):
        """Model FLOPs of a training step on a global batch: 3x forward over its real tokens."""
        enc_len, dec_len = batch["enc_ids"].shape[1], batch["dec_ids"].shape[1]
        enc, dec = self.flops_per_token(enc_len, dec_len)
        enc_real, dec_real = int(batch["enc_mask"].sum()), int(batch["dec_mask"].sum())
        forward = enc_real * enc + dec_real * dec
        for b, (_, width) in enumerate(self.experts):
            rows = len(self.enc_mowe) * int(((batch["enc_bucket"] == b) & (batch["enc_mask"] != 0)).sum())
            rows += len(self.dec_mowe) * int(((batch["dec_bucket"] == b) & (batch["dec_mask"] != 0)).sum())
            forward += rows * 2 * 2 * self.d * width
        return 3 * forward, enc_real + dec_real


# ---- routing: tokens grouped by expert ----------------------------------------------------------
def group_tokens(bucket, expert, valid, dims):
    """Per bucket, per capacity class c (experts with 2^(c-1) < tokens <= 2^c): the experts (their
    index in the bucket) and a [experts * 2^c] index of their tokens, padding pointing at the extra
    zero row N."""
    bucket, expert = bucket.reshape(-1).long(), expert.reshape(-1).long()
    n = bucket.numel()
    routed = (bucket >= 0) & (valid.reshape(-1) != 0)
    groups = []
    for b, (experts, _) in enumerate(dims.experts):
        tokens = torch.nonzero(routed & (bucket == b)).reshape(-1)
        classes = []
        if tokens.numel():
            order = torch.argsort(expert[tokens], stable=True)
            tokens = tokens[order]
            ids = expert[tokens]
            used, counts = torch.unique_consecutive(ids, return_counts=True)
            starts = torch.cumsum(counts, 0) - counts
            slot = torch.arange(tokens.numel()) - torch.repeat_interleave(starts, counts)
            cls = torch.ceil(torch.log2(counts.double())).long()
            token_cls = torch.repeat_interleave(cls, counts)
            for c in torch.unique(cls).tolist():
                members = torch.nonzero(cls == c).reshape(-1)
                cap = 1 << c
                rank_in_class = torch.full((experts,), -1, dtype=torch.long)
                rank_in_class[used[members]] = torch.arange(members.numel())
                index = torch.full((members.numel() * cap,), n, dtype=torch.long)
                mine = token_cls == c
                index[rank_in_class[ids[mine]] * cap + slot[mine]] = tokens[mine]
                classes.append((used[members], cap, index))
        groups.append(classes)
    return groups


# ---- the model --------------------------------------------------------------------------------
def relative_buckets(q_len, k_len, bidirectional, dims):
    """T5's relative position buckets [q_len, k_len] (exact for small distances, logarithmic up to
    max_distance), split by direction in the encoder."""
    rel = torch.arange(k_len)[None, :] - torch.arange(q_len)[:, None]
    n = -rel
    buckets, ret = dims.num_buckets, torch.zeros_like(n)
    if bidirectional:
        buckets //= 2
        ret = (n < 0).long() * buckets
        n = n.abs()
    else:
        n = n.clamp(min=0)
    exact = buckets // 2
    large = exact + (torch.log(n.clamp(min=1).float() / exact) / math.log(dims.max_distance / exact)
                     * (buckets - exact)).long()
    return ret + torch.where(n < exact, n, large.clamp(max=buckets - 1))


class T5(torch.nn.Module):
    def __init__(self, dims):
        super().__init__()
        self.dims = dims
        d, hd, f, v = dims.d, dims.hd, dims.d_ff, dims.vocab

        def p(*shape, std=1.0, ones=False):
            t = torch.ones(shape) if ones else torch.randn(shape) * std
            return torch.nn.Parameter(t)

        self.embedding = p(v, d)
        self.lm_head = p(d, v, std=d ** -0.5)
        self.params = torch.nn.ParameterDict()
        for stack, layers, mowe in (("encoder", dims.enc_layers, dims.enc_mowe),
                                    ("decoder", dims.dec_layers, dims.dec_mowe)):
            self.params[f"{stack}_bias"] = p(dims.num_buckets, dims.heads, std=0.5)
            self.params[f"{stack}_final_norm"] = p(d, ones=True)
            for i in range(layers):
                s = f"{stack}{i}"
                self.params[f"{s}_self_norm"] = p(d, ones=True)
                self.params[f"{s}_self_qkv"] = p(d, 3 * hd, std=d ** -0.5)
                self.params[f"{s}_self_o"] = p(hd, d, std=hd ** -0.5)
                if stack == "decoder":
                    self.params[f"{s}_cross_norm"] = p(d, ones=True)
                    self.params[f"{s}_cross_q"] = p(d, hd, std=d ** -0.5)
                    self.params[f"{s}_cross_kv"] = p(d, 2 * hd, std=d ** -0.5)
                    self.params[f"{s}_cross_o"] = p(hd, d, std=hd ** -0.5)
                self.params[f"{s}_ffn_norm"] = p(d, ones=True)
                if i not in mowe:
                    self.params[f"{s}_ffn_wi"] = p(d, 2 * f, std=d ** -0.5)  # wi_0 | wi_1
                    self.params[f"{s}_ffn_wo"] = p(f, d, std=f ** -0.5)
        for b, (experts, width) in enumerate(dims.experts):
            self.params[f"expert{b}_wi"] = p(experts, d, width, std=d ** -0.5)
            self.params[f"expert{b}_wo"] = p(experts, width, d, std=width ** -0.5)

    def load_trainer_weights(self, w):
        """The trainer's parameters (mowe_bench_step --dump-weights) into this layout."""
        P, d = self.params, self.dims
        with torch.no_grad():
            self.embedding.copy_(w["shared.embedding"])
            self.lm_head.copy_(w["decoder.lm_head"])
            for stack, layers in (("encoder", d.enc_layers), ("decoder", d.dec_layers)):
                P[f"{stack}_bias"].copy_(w[f"{stack}.relative_attention_bias"])
                P[f"{stack}_final_norm"].copy_(w[f"{stack}.final_norm"])
                for i in range(layers):
                    s, t = f"{stack}{i}", f"{stack}.block{i}"
                    a = f"{t}.self_attention"
                    P[f"{s}_self_norm"].copy_(w[f"{a}.norm"])
                    P[f"{s}_self_qkv"].copy_(torch.cat([w[f"{a}.q"], w[f"{a}.k"], w[f"{a}.v"]], 1))
                    P[f"{s}_self_o"].copy_(w[f"{a}.o"])
                    if stack == "decoder":
                        a = f"{t}.cross_attention"
                        P[f"{s}_cross_norm"].copy_(w[f"{a}.norm"])
                        P[f"{s}_cross_q"].copy_(w[f"{a}.q"])
                        P[f"{s}_cross_kv"].copy_(torch.cat([w[f"{a}.k"], w[f"{a}.v"]], 1))
                        P[f"{s}_cross_o"].copy_(w[f"{a}.o"])
                    if f"{s}_ffn_wi" in P:
                        P[f"{s}_ffn_norm"].copy_(w[f"{t}.ffn.norm"])
                        P[f"{s}_ffn_wi"].copy_(torch.cat([w[f"{t}.ffn.wi_0"], w[f"{t}.ffn.wi_1"]], 1))
                        P[f"{s}_ffn_wo"].copy_(w[f"{t}.ffn.wo"])
                    else:
                        P[f"{s}_ffn_norm"].copy_(w[f"{t}.mowe.norm"])
            for b in range(len(d.experts)):
                P[f"expert{b}_wi"].copy_(w[f"mowe.bucket{b}.wi"])
                P[f"expert{b}_wo"].copy_(w[f"mowe.bucket{b}.wo"])

    def norm(self, x, scale):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.dims.eps) * scale

    def attend(self, q, k, v, bias):
        """q [B, T, HD], k and v [B, S, HD], bias [B, H, T, S] (position bias + mask)."""
        d = self.dims
        b, t, s = q.shape[0], q.shape[1], k.shape[1]
        q = q.view(b, t, d.heads, d.d_kv).transpose(1, 2)
        k = k.view(b, s, d.heads, d.d_kv).permute(0, 2, 3, 1)
        v = v.view(b, s, d.heads, d.d_kv).transpose(1, 2)
        scores = torch.matmul(q, k) + bias  # no 1/sqrt(d_kv), as T5
        out = torch.matmul(torch.softmax(scores, -1), v)
        return out.transpose(1, 2).reshape(b, t, d.hd)

    def mowe(self, h, groups, experts):
        """h [N, C] -> [N, C]: each routed token through its expert, zero for the others.
        experts[b]: per capacity class of bucket b, the (wi, wo) of its experts."""
        n, c = h.shape
        padded = torch.cat([h, h.new_zeros(1, c)])
        out = h.new_zeros(n + 1, c)
        for (_, _, classes), (wis, wos) in zip(groups, experts):
            for (cap, index), wi, wo in zip(classes, wis, wos):
                x = padded.index_select(0, index).view(-1, cap, c)
                y = torch.bmm(F.gelu(torch.bmm(x, wi), approximate="tanh"), wo)
                out = out.index_add(0, index, y.reshape(-1, c))
        return out[:n]

    @staticmethod
    def stack_experts(used, groups):
        """Per bucket, the stack's experts out of the step's (used), split by capacity class: one
        gather and one split per stack, whose gradients are one scatter and one concatenation."""
        out = []
        for (wi, wo), (select, sizes, _) in zip(used, groups):
            out.append((wi.index_select(0, select).split(sizes),
                        wo.index_select(0, select).split(sizes)))
        return out

    def ffn(self, x, s, routed, experts):
        P = self.params
        h = self.norm(x, P[f"{s}_ffn_norm"])
        if routed is not None:
            return x + self.mowe(h.reshape(-1, h.shape[-1]), routed, experts).view_as(x)
        a, g = torch.matmul(h, P[f"{s}_ffn_wi"]).chunk(2, -1)
        return x + torch.matmul(F.gelu(a, approximate="tanh") * g, P[f"{s}_ffn_wo"])

    def stack(self, name, x, bias, groups, experts, memory=None, cross_bias=None):
        P, d = self.params, self.dims
        layers, mowe = (d.enc_layers, d.enc_mowe) if name == "encoder" else (d.dec_layers, d.dec_mowe)
        for i in range(layers):
            s = f"{name}{i}"
            h = self.norm(x, P[f"{s}_self_norm"])
            q, k, v = torch.matmul(h, P[f"{s}_self_qkv"]).chunk(3, -1)
            x = x + torch.matmul(self.attend(q, k, v, bias), P[f"{s}_self_o"])
            if memory is not None:
                h = self.norm(x, P[f"{s}_cross_norm"])
                k, v = torch.matmul(memory, P[f"{s}_cross_kv"]).chunk(2, -1)
                q = torch.matmul(h, P[f"{s}_cross_q"])
                x = x + torch.matmul(self.attend(q, k, v, cross_bias), P[f"{s}_cross_o"])
            x = self.ffn(x, s, groups if i in mowe else None, experts)
        return self.norm(x, P[f"{name}_final_norm"])

    def forward(self, batch):
        """Sum over target tokens of weight * (cross-entropy + z_loss * lse^2)."""
        P = self.params
        enc_bias = P["encoder_bias"][batch["enc_pos"]].permute(2, 0, 1)[None] + batch["enc_mask_add"]
        dec_bias = P["decoder_bias"][batch["dec_pos"]].permute(2, 0, 1)[None] + batch["dec_mask_add"]
        # The experts this step's tokens use, gathered once for all MoWE layers: the gradient of
        # the whole expert tensor is then formed once per step, not once per layer and class.
        used = [(P[f"expert{b}_wi"].index_select(0, u), P[f"expert{b}_wo"].index_select(0, u))
                for b, u in enumerate(batch["used_experts"])]
        enc = self.stack("encoder", self.embedding[batch["enc_ids"]], enc_bias, batch["enc_groups"],
                         self.stack_experts(used, batch["enc_groups"]))
        dec = self.stack("decoder", self.embedding[batch["dec_ids"]], dec_bias, batch["dec_groups"],
                         self.stack_experts(used, batch["dec_groups"]), memory=enc,
                         cross_bias=batch["cross_mask_add"])
        logits = torch.matmul(dec.reshape(-1, self.dims.d), self.lm_head)
        lse = torch.logsumexp(logits, -1)
        target = logits.gather(1, batch["targets"].reshape(-1, 1)).reshape(-1)
        w = batch["loss_weights"].reshape(-1)
        return (w * (lse - target + self.dims.z_loss * lse * lse)).sum()


def prepare(raw, dims, rank, world):
    """This rank's slice of a global batch with everything a step derives from the batch alone:
    masks as additive biases, position buckets, tokens grouped by expert (the trainer's loader
    thread routes its batches the same way, before the step)."""
    b = raw["enc_ids"].shape[0]
    lo, hi = rank * b // world, (rank + 1) * b // world
    x = {k: v[lo:hi] for k, v in raw.items()}
    t_enc, t_dec = x["enc_ids"].shape[1], x["dec_ids"].shape[1]
    neg = -1e9
    enc_keys = (x["enc_mask"] == 0).float()[:, None, None, :] * neg  # [B, 1, 1, I]
    causal = torch.triu(torch.ones(t_dec, t_dec, dtype=torch.bool), 1).float() * neg
    dec_keys = (x["dec_mask"] == 0).float()[:, None, None, :] * neg
    enc_groups = group_tokens(x["enc_bucket"], x["enc_expert"], x["enc_mask"], dims)
    dec_groups = group_tokens(x["dec_bucket"], x["dec_expert"], x["dec_mask"], dims)
    # Both stacks' experts of each bucket (gathered once per step), and per stack the positions in
    # that list of its classes' experts, class after class.
    used_experts = []
    for b, (experts, _) in enumerate(dims.experts):
        classes = enc_groups[b] + dec_groups[b]
        used = torch.unique(torch.cat([e for e, _, _ in classes])) if classes else \
            torch.zeros(0, dtype=torch.long)
        local = torch.full((experts,), -1, dtype=torch.long)
        local[used] = torch.arange(used.numel())
        for groups in (enc_groups, dec_groups):
            classes = groups[b]
            select = torch.cat([local[e] for e, _, _ in classes]) if classes else \
                torch.zeros(0, dtype=torch.long)
            groups[b] = (select, [e.numel() for e, _, _ in classes],
                         [(cap, index) for _, cap, index in classes])
        used_experts.append(used)
    return {
        "enc_ids": x["enc_ids"].long(), "dec_ids": x["dec_ids"].long(),
        "targets": x["targets"].long(), "loss_weights": x["loss_weights"].float(),
        "enc_mask_add": enc_keys, "cross_mask_add": enc_keys,
        "dec_mask_add": dec_keys + causal[None, None],
        "enc_pos": relative_buckets(t_enc, t_enc, True, dims),
        "dec_pos": relative_buckets(t_dec, t_dec, False, dims),
        "enc_groups": enc_groups, "dec_groups": dec_groups, "used_experts": used_experts,
    }


def load_batches(path):
    tensors, meta = read_safetensors(path)
    n = int(meta["batches"])
    names = ("enc_ids", "enc_mask", "enc_bucket", "enc_expert", "dec_ids", "dec_mask", "dec_bucket",
             "dec_expert", "targets", "loss_weights")
    batches = [{k: tensors[f"b{i}.{k}"] for k in names} for i in range(n)]
    return batches, tensors["model_flops"], json.loads(meta["config"])


# ---- measuring --------------------------------------------------------------------------------
def sgemm_peak(seconds=0.5):
    """Best GFLOP/s of 1024^3 fp32 products over about `seconds` with this rank's threads."""
    a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
    c = torch.empty(1024, 1024)
    torch.matmul(a, b, out=c)
    best, end = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < end:
        t = time.perf_counter()
        torch.matmul(a, b, out=c)
        best = max(best, 2 * 1024 ** 3 / (time.perf_counter() - t) / 1e9)
    return best


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batches", required=True, help="mowe_bench_step --dump-batches output")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--threads", type=int, default=0, help="per rank (default: cores / ranks)")
    ap.add_argument("--check", action="store_true", help="counts and the first batch's loss")
    ap.add_argument("--weights", help="mowe_bench_step --dump-weights output (with --check)")
    args = ap.parse_args()

    rank = int(os.environ.get("OMPI_COMM_WORLD_RANK", os.environ.get("RANK", 0)))
    world = int(os.environ.get("OMPI_COMM_WORLD_SIZE", os.environ.get("WORLD_SIZE", 1)))
    local = int(os.environ.get("OMPI_COMM_WORLD_LOCAL_SIZE", world))
    threads = args.threads or max(1, os.cpu_count() // local)
    torch.set_num_threads(threads)
    torch.manual_seed(1)
    if world > 1:
        import torch.distributed as dist
        os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
        os.environ.setdefault("MASTER_PORT", "29531")
        dist.init_process_group("gloo", rank=rank, world_size=world)

    raw, trainer_flops, cfg = load_batches(args.batches)
    dims = Dims(cfg)
    model = T5(dims)
    params = sum(p.numel() for p in model.parameters())

    if args.check:
        flops = [dims.step_flops(b)[0] for b in raw]
        result = {"params": params, "flops": flops, "trainer_flops": trainer_flops.tolist()}
        if args.weights:
            weights, _ = read_safetensors(args.weights)
            model.load_trainer_weights(weights)
            with torch.no_grad():
                batch = prepare(raw[0], dims, 0, 1)
                total = model(batch)
            result["loss"] = total.item() / float(raw[0]["loss_weights"].sum())
        print("CHECK " + json.dumps(result))
        return

    total_steps = args.warmup + args.steps
    if total_steps > len(raw):
        raise SystemExit(f"{args.batches} holds {len(raw)} batches, {total_steps} asked for")
    batches = [prepare(raw[i], dims, rank, world) for i in range(total_steps)]
    targets = [float(raw[i]["loss_weights"].sum()) for i in range(total_steps)]
    counted = [dims.step_flops(raw[i]) for i in range(total_steps)]

    net = model
    if world > 1:
        net = torch.nn.parallel.DistributedDataParallel(model, gradient_as_bucket_view=True)
    opt = torch.optim.AdamW(model.parameters(), lr=dims.lr, betas=dims.betas, eps=dims.adam_eps,
                            weight_decay=dims.weight_decay, foreach=True)

    def all_ranks(values, op):
        t = torch.tensor(values, dtype=torch.float64)
        if world > 1:
            dist.all_reduce(t, op=op)
        return t.tolist()

    def measure_peak():
        """Every rank at once, as they share the cores in a step."""
        if world > 1:
            dist.barrier()
        return all_ranks([sgemm_peak() * 1e9], dist.ReduceOp.SUM if world > 1 else None)[0]

    # Before and after the steps, the better of the two (another job may run during either).
    peak = measure_peak()

    sums = {"forward": 0.0, "backward": 0.0, "optimizer": 0.0, "wall": 0.0}
    tokens = flops = 0.0
    for i in range(total_steps):
        t0 = time.perf_counter()
        # The sum over this rank's targets over the global count; DDP averages gradients over
        # the ranks, so world x this is the gradient of the global mean.
        loss = net(batches[i]) * (world / targets[i])
        t1 = time.perf_counter()
        loss.backward()
        t2 = time.perf_counter()
        if dims.clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), dims.clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
        t3 = time.perf_counter()
        if rank == 0:
            print(f"step {i + 1}{' (warm-up)' if i < args.warmup else ''}: local loss "
                  f"{loss.item() / world:.6f}, {t3 - t0:.3f} s", flush=True)
        if i < args.warmup:
            continue
        sums["forward"] += t1 - t0
        sums["backward"] += t2 - t1
        sums["optimizer"] += t3 - t2
        sums["wall"] += t3 - t0
        flops += counted[i][0]
        tokens += counted[i][1]

    peak = max(peak, measure_peak())
    n = args.steps
    op_max = dist.ReduceOp.MAX if world > 1 else None
    wall, fwd, bwd, optim = all_ranks([sums["wall"], sums["forward"] / n, sums["backward"] / n,
                                       sums["optimizer"] / n], op_max)
    rss = [0.0] * world
    rss[rank] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    rss = all_ranks(rss, dist.ReduceOp.SUM if world > 1 else None)
    if rank != 0:
        return
    tps, mfu = tokens / wall, flops / wall / peak
    print(f"torch {torch.__version__}: {world} ranks x {threads} threads, {params} parameters\n"
          f"{n} measured steps after {args.warmup} warm-up: {tokens / n:.0f} real tokens/step, "
          f"{tps:.1f} real tokens/s\n"
          f"step {wall / n:.4f} s: forward {fwd:.4f}, backward {bwd:.4f} (allreduce included), "
          f"optimizer {optim:.4f} (mean per step, max over ranks)\n"
          f"model FLOPs/step {flops / n:.4e}; MFU {100 * mfu:.2f}% of the sgemm peak "
          f"{peak / 1e9:.1f} GFLOP/s (all ranks)\n"
          f"peak RSS per rank (MB): {', '.join(f'{r:.0f}' for r in rss)}")
    print("BENCH_STEP " + json.dumps({
        "impl": "torch", "ranks": world, "threads": threads, "warmup": args.warmup, "steps": n,
        "params": params, "tokens_per_step": tokens / n, "tokens_per_s": tps, "step_s": wall / n,
        "forward_s": fwd, "backward_s": bwd, "optimizer_s": optim,
        "model_flops_per_step": flops / n, "peak_gflops": peak / 1e9, "mfu": mfu,
        "peak_rss_mb": [round(r) for r in rss]}), flush=True)


if __name__ == "__main__":
    sys.exit(main())
