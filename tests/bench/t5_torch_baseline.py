#!/usr/bin/python3
"""The PyTorch baseline of mowe_bench_step: the same T5.1.1 / MoWE model trained on the same
global batches (the file `mowe_bench_step --dump-batches` writes: token ids, masks, each token's
bucket and expert, and the rank owning each expert block), written for the CPU as a
performance-minded PyTorch user would write it for this model on Debian's torch 1.13:

  * fused Q/K/V (and cross K/V) and gated-FFN products, one position bias plus mask per stack and
    step, attention as batched matrix products;
  * MoWE layers without Python loops over tokens or experts: tokens grouped by expert once per
    batch (as the trainer's loader thread does, off the step), experts of similar load padded
    together into power-of-two capacity classes, so each bucket is a few gathers and two bmm per
    class, and the results scattered back with index_add;
  * expert parallelism as the trainer's: at several ranks each rank holds the expert blocks the
    trainer's dispatch plan gives it (from the dump), and every MoWE layer sends each routed token
    to the rank owning its expert and the result back, with all_to_all_single over gloo (its
    backward is the reverse exchange). The row counts of every exchange follow from the global
    batch, which every rank reads, so they are derived off the step like the grouping;
  * expert gradients only where they can be non-zero: each step gathers the experts its tokens use
    into small leaf tensors, so backward never forms a gradient of the whole expert tensor;
  * dense parameters as views of one flat buffer, their gradients views of one flat gradient
    buffer that autograd accumulates into (no allocation per step), allreduced in one call;
  * AdamW exactly as the trainer's (runtime/math.h adamw_update, coefficients as in
    runtime/op_checks.h adamw_coeffs): decoupled weight decay on every parameter,
    p -= lr * (m_hat / (sqrt(v_hat) + eps) + weight_decay * p), bias correction with the 1-based
    update number, gradients scaled by the global-norm clipping factor min(1, clip / norm). With
    training.adamw_lazy_experts false (the default, and the benchmark configs) the update is DENSE
    over the experts as the trainer's: rows without tokens this step still move (momentum and
    weight decay), computed with their gradient of exactly zero, so their pass never reads a
    gradient; rows with tokens take the full update from their gathered gradients. With
    adamw_lazy_experts true only the rows with tokens are updated, as the trainer then does.
    The update runs one pass per 64K-element chunk (the chunk's p, m, v, g stay in cache across
    torch's in-place ops) instead of torch.optim.AdamW's full-size passes; the clipping norm is
    one dot product over the flat dense gradient plus the small expert gradients;
  * thread pools sized before torch loads: torch's element-wise ops run on OpenMP and its
    matrix products on OpenBLAS's own threads (Debian's build), so OMP_NUM_THREADS and
    OPENBLAS_NUM_THREADS are set to the threads per rank and OMP_WAIT_POLICY to PASSIVE (idle
    OpenMP workers sleep instead of spinning on the core OpenBLAS needs). Each is only a default:
    a value in the environment wins. Ranks are bound by mpirun as the trainer's are.

Run with Debian's python3 (python3-torch), alone or under mpirun (ranks from Open MPI's
environment, rendezvous on 127.0.0.1):

  mpirun -np 2 --bind-to core /usr/bin/python3 tests/bench/t5_torch_baseline.py \
      --batches B.safetensors --warmup 3 --steps 10 [--threads 1]
  /usr/bin/python3 tests/bench/t5_torch_baseline.py --batches B --check --weights W.safetensors
  mpirun -np 2 /usr/bin/python3 tests/bench/t5_torch_baseline.py --batches B --warmup 0 \
      --steps 3 --weights W0.safetensors --compare-weights W3.safetensors

Prints real tokens/s (padding excluded), the mean step time split into forward, backward (the
all-to-all exchanges included), allreduce (the dense gradients) and optimizer (clipping norm
included), model FLOPs per step counted from first principles exactly as the trainer counts
them, MFU against a 1024^3 sgemm peak measured in the same run by every rank at once (before and
after the steps, the better), peak RSS per rank, and one JSON line starting with "BENCH_STEP ".
--check prints the parameter count, each batch's FLOPs next to the trainer's, and the loss of
the --weights parameters on the first batch, as JSON ("CHECK "). --weights without --check
starts training from the trainer's initial parameters; --compare-weights then prints, for every
trainer parameter, the largest difference between the trainer's parameters after the same steps
and the baseline's, and the largest change the trainer's steps made ("PARAMS ").
"""

import argparse
import json
import math
import os
import resource
import struct
import sys
import time


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batches", required=True, help="mowe_bench_step --dump-batches output")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--threads", type=int, default=0, help="per rank (default: cores / ranks)")
    ap.add_argument("--check", action="store_true", help="counts and the first batch's loss")
    ap.add_argument("--weights", help="mowe_bench_step --dump-weights output: the initial "
                    "parameters (default: random ones)")
    ap.add_argument("--compare-weights", help="mowe_bench_step --dump-final-weights output of "
                    "the same steps from the same --weights: print the differences")
    return ap.parse_args()


def rank_environment():
    """(rank, world size, ranks on this host) from Open MPI's environment, else torchrun's."""
    rank = int(os.environ.get("OMPI_COMM_WORLD_RANK", os.environ.get("RANK", 0)))
    world = int(os.environ.get("OMPI_COMM_WORLD_SIZE", os.environ.get("WORLD_SIZE", 1)))
    local = int(os.environ.get("OMPI_COMM_WORLD_LOCAL_SIZE", world))
    return rank, world, local


def configure_threads(threads):
    """The thread pools' sizes and wait policy, read once when torch's libraries load."""
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(name, str(threads))
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


if __name__ == "__main__":
    ARGS = parse_args()
    RANK, WORLD, LOCAL = rank_environment()
    THREADS = ARGS.threads or max(1, (os.cpu_count() or 1) // LOCAL)
    configure_threads(THREADS)

import torch  # noqa: E402 (after the thread environment)
import torch.distributed as dist  # noqa: E402
import torch.nn.functional as F  # noqa: E402

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
        self.experts_per_block = []
        if m["dropout_rate"] or w["expert_dropout_rate"]:
            raise SystemExit("the baseline implements no dropout (model.dropout_rate and "
                             "model.mowe.expert_dropout_rate must be 0)")
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
            self.experts_per_block = [b["experts_per_block"] for b in w["buckets"]]
        self.z_loss = t["z_loss"]
        if t["optimizer"] != "ADAMW":
            raise SystemExit("the baseline implements AdamW only")
        if t["lr_schedule"] != "CONSTANT":
            raise SystemExit("the baseline implements training.lr_schedule CONSTANT only")
        self.lr, self.warmup_steps = t["learning_rate"], int(t["warmup_steps"])
        self.weight_decay, self.adam_eps = t["weight_decay"], t["adam_eps"]
        self.betas = (t["adam_beta1"], t["adam_beta2"])
        self.lazy_experts = t["adamw_lazy_experts"]
        self.clip = t["grad_clip_norm"]

    def learning_rate(self, step):
        """The rate of the update made after `step` updates: runtime/lr_schedule.cc, CONSTANT."""
        if step < self.warmup_steps:
            return self.lr * step / self.warmup_steps
        return self.lr

    def expert_parameters(self):
        return sum(2 * experts * self.d * width for experts, width in self.experts)

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


class Placement:
    """Where the experts live: per bucket the rank owning each expert and its index there (a
    rank's experts are its blocks in ascending order, each block's experts in order, as the
    trainer's dispatch plan numbers them), and this rank's experts in that order."""

    def __init__(self, dims, tensors, meta, rank, world):
        self.rank, self.world = rank, world
        self.owner, self.local, self.mine = [], [], []
        if world > 1 and dims.experts and int(meta.get("world_size", 1)) != world:
            raise SystemExit(f"the batches were dumped by a {meta.get('world_size', 1)}-rank run; "
                             f"the expert placement of {world} ranks needs a {world}-rank dump")
        for b, (experts, _) in enumerate(dims.experts):
            per_block = dims.experts_per_block[b]
            blocks = experts // per_block
            block_rank = tensors[f"bucket{b}.block_rank"].long() if world > 1 else \
                torch.zeros(blocks, dtype=torch.long)
            counts = torch.bincount(block_rank, minlength=world)
            if int(counts.min()) != int(counts.max()):
                raise SystemExit(f"bucket {b}: {blocks} blocks on {world} ranks; the baseline "
                                 "shards experts only when every rank owns whole blocks of it")
            slot = torch.zeros(blocks, dtype=torch.long)  # the block's place among its owner's
            for k in range(blocks):
                slot[k] = int((block_rank[:k] == block_rank[k]).sum())
            e = torch.arange(experts)
            self.owner.append(block_rank[e // per_block])
            self.local.append(slot[e // per_block] * per_block + e % per_block)
            mine = e[self.owner[-1] == rank]
            self.mine.append(mine[torch.argsort(self.local[-1][mine])])

    def local_experts(self):
        return [m.numel() for m in self.mine]


# ---- routing: tokens grouped by expert ----------------------------------------------------------
def group_tokens(bucket, expert, counts):
    """Rows (bucket, expert index, -1 when unrouted) -> per bucket, per capacity class c (experts
    with 2^(c-1) < rows <= 2^c): the experts and a [experts * 2^c] index of their rows, padding
    pointing at the extra zero row N."""
    n = bucket.numel()
    groups = []
    for b, experts in enumerate(counts):
        rows = torch.nonzero(bucket == b).reshape(-1)
        classes = []
        if rows.numel():
            order = torch.argsort(expert[rows], stable=True)
            rows = rows[order]
            ids = expert[rows]
            used, sizes = torch.unique_consecutive(ids, return_counts=True)
            starts = torch.cumsum(sizes, 0) - sizes
            slot = torch.arange(rows.numel()) - torch.repeat_interleave(starts, sizes)
            cls = torch.ceil(torch.log2(sizes.double())).long()
            row_cls = torch.repeat_interleave(cls, sizes)
            for c in torch.unique(cls).tolist():
                members = torch.nonzero(cls == c).reshape(-1)
                cap = 1 << c
                rank_in_class = torch.full((experts,), -1, dtype=torch.long)
                rank_in_class[used[members]] = torch.arange(members.numel())
                index = torch.full((members.numel() * cap,), n, dtype=torch.long)
                mine = row_cls == c
                index[rank_in_class[ids[mine]] * cap + slot[mine]] = rows[mine]
                classes.append((used[members], cap, index))
        groups.append(classes)
    return groups


class Route:
    """One stack's MoWE routing on this rank. `groups`: the rows this rank's experts compute,
    grouped (group_tokens, then resolved by prepare()). At one rank the rows are the stack's
    tokens; at several they are the rows received, source rank by source rank, and `send` lists
    this rank's routed tokens in the order sent (by destination rank, then position), with the
    row counts to (`send_splits`) and from (`recv_splits`) every rank."""

    def __init__(self, groups, send=None, send_splits=None, recv_splits=None):
        self.groups, self.send = groups, send
        self.send_splits, self.recv_splits = send_splits, recv_splits


def route_stack(bucket, expert, mask, dims, place, rank):
    """The Route of one stack from the global batch's [B, T] bucket, expert and mask arrays."""
    world = place.world
    b_rows = bucket.shape[0]
    local_counts = place.local_experts()

    def tokens_of(r):
        """Rank r's routed tokens: (positions, bucket, destination rank, local expert there)."""
        lo, hi = r * b_rows // world, (r + 1) * b_rows // world
        bk, ex = bucket[lo:hi].reshape(-1).long(), expert[lo:hi].reshape(-1).long()
        pos = torch.nonzero((bk >= 0) & (mask[lo:hi].reshape(-1) != 0)).reshape(-1)
        bk, ex = bk[pos], ex[pos]
        dest = torch.zeros_like(pos)
        local = torch.zeros_like(pos)
        for b in range(len(dims.experts)):
            sel = bk == b
            dest[sel] = place.owner[b][ex[sel]]
            local[sel] = place.local[b][ex[sel]]
        order = torch.argsort(dest, stable=True)
        return pos[order], bk[order], dest[order], local[order]

    if world == 1:
        pos, bk, _, local = tokens_of(0)
        n = bucket[0:b_rows].numel()
        rows_bucket = torch.full((n,), -1, dtype=torch.long)
        rows_expert = torch.full((n,), -1, dtype=torch.long)
        rows_bucket[pos], rows_expert[pos] = bk, local
        return Route(group_tokens(rows_bucket, rows_expert, local_counts))
    recv_bucket, recv_expert, recv_splits = [], [], []
    for source in range(world):
        pos, bk, dest, local = tokens_of(source)
        here = dest == rank
        recv_bucket.append(bk[here])
        recv_expert.append(local[here])
        recv_splits.append(int(here.sum()))
        if source == rank:
            send, send_dest = pos, dest
    groups = group_tokens(torch.cat(recv_bucket), torch.cat(recv_expert), local_counts)
    send_splits = torch.bincount(send_dest, minlength=world).tolist()
    return Route(groups, send, send_splits, recv_splits)


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


class Exchange(torch.autograd.Function):
    """Rows to other ranks with all_to_all_single: `send` rows to each rank, `recv` from each.
    Its gradient is the same exchange backwards."""

    @staticmethod
    def forward(ctx, x, send, recv):
        ctx.splits = (send, recv)
        out = x.new_empty(sum(recv), x.shape[1])
        dist.all_to_all_single(out, x.contiguous(), recv, send)
        return out

    @staticmethod
    def backward(ctx, grad):
        send, recv = ctx.splits
        out = grad.new_empty(sum(send), grad.shape[1])
        dist.all_to_all_single(out, grad.contiguous(), send, recv)
        return out, None, None


def parameter_map(dims):
    """(trainer name, baseline parameter, columns) of every trainer parameter: the baseline fuses
    Q/K/V, cross K/V and wi_0/wi_1 along columns; columns None is the whole tensor."""
    hd, f = dims.hd, dims.d_ff
    out = [("shared.embedding", "embedding", None), ("decoder.lm_head", "lm_head", None)]
    for stack, layers, mowe in (("encoder", dims.enc_layers, dims.enc_mowe),
                                ("decoder", dims.dec_layers, dims.dec_mowe)):
        out += [(f"{stack}.relative_attention_bias", f"{stack}_bias", None),
                (f"{stack}.final_norm", f"{stack}_final_norm", None)]
        for i in range(layers):
            s, t = f"{stack}{i}", f"{stack}.block{i}"
            a = f"{t}.self_attention"
            out.append((f"{a}.norm", f"{s}_self_norm", None))
            out += [(f"{a}.{x}", f"{s}_self_qkv", (j * hd, (j + 1) * hd)) for j, x in enumerate("qkv")]
            out.append((f"{a}.o", f"{s}_self_o", None))
            if stack == "decoder":
                a = f"{t}.cross_attention"
                out += [(f"{a}.norm", f"{s}_cross_norm", None), (f"{a}.q", f"{s}_cross_q", None),
                        (f"{a}.k", f"{s}_cross_kv", (0, hd)), (f"{a}.v", f"{s}_cross_kv", (hd, 2 * hd)),
                        (f"{a}.o", f"{s}_cross_o", None)]
            if i in mowe:
                out.append((f"{t}.mowe.norm", f"{s}_ffn_norm", None))
            else:
                out += [(f"{t}.ffn.norm", f"{s}_ffn_norm", None),
                        (f"{t}.ffn.wi_0", f"{s}_ffn_wi", (0, f)), (f"{t}.ffn.wi_1", f"{s}_ffn_wi", (f, 2 * f)),
                        (f"{t}.ffn.wo", f"{s}_ffn_wo", None)]
    for b in range(len(dims.experts)):
        out += [(f"mowe.bucket{b}.wi", f"expert{b}_wi", None), (f"mowe.bucket{b}.wo", f"expert{b}_wo", None)]
    return out


class T5(torch.nn.Module):
    """The dense parameters in `params` (replicated over ranks), this rank's experts in
    `experts`: per bucket [wi [E, d, w], wo [E, w, d]], plain tensors outside autograd (each step
    works on leaf copies of the rows its tokens use)."""

    def __init__(self, dims, place):
        super().__init__()
        self.dims, self.place = dims, place
        d, hd, f, v = dims.d, dims.hd, dims.d_ff, dims.vocab

        def p(*shape, std=1.0, ones=False):
            t = torch.ones(shape) if ones else torch.randn(shape) * std
            return torch.nn.Parameter(t)

        self.params = torch.nn.ParameterDict()
        self.params["embedding"] = p(v, d)
        self.params["lm_head"] = p(d, v, std=d ** -0.5)
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
        # The experts as views of one buffer (the optimizer's flat expert buffer), drawn in place.
        self.expert_buffer = torch.empty(sum(2 * n * d * width for n, (_, width) in
                                             zip(place.local_experts(), dims.experts)))
        self.experts, offset = [], 0
        for n, (_, width) in zip(place.local_experts(), dims.experts):
            pair = []
            for shape, std in (((n, d, width), d ** -0.5), ((n, width, d), width ** -0.5)):
                size = n * d * width
                pair.append(self.expert_buffer[offset:offset + size].view(shape).normal_(0, std))
                offset += size
            self.experts.append(pair)

    def tensor(self, name):
        """A baseline parameter by its name in parameter_map (experts: this rank's rows)."""
        if name.startswith("expert"):
            b, which = name[len("expert"):].split("_")
            return self.experts[int(b)][0 if which == "wi" else 1]
        return self.params[name]

    def trainer_pairs(self, weights):
        """(trainer name, the trainer's tensor as this rank holds it, the baseline's view of it)."""
        for name, mine, cols in parameter_map(self.dims):
            theirs, ours = weights[name], self.tensor(mine)
            if name.startswith("mowe.bucket"):
                theirs = theirs[self.place.mine[int(name.split(".")[1][len("bucket"):])]]
            if cols is not None:
                ours = ours[:, cols[0]:cols[1]]
            yield name, theirs, ours

    def load_trainer_weights(self, weights):
        """The trainer's parameters (mowe_bench_step --dump-weights) into this layout."""
        with torch.no_grad():
            for _, theirs, ours in self.trainer_pairs(weights):
                ours.copy_(theirs)

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

    @staticmethod
    def expert_rows(x, groups, experts):
        """x [R, C] -> [R, C]: each grouped row through its expert, zero for the others.
        experts[b]: per capacity class of bucket b, the (wi, wo) of its experts."""
        n, c = x.shape
        padded = torch.cat([x, x.new_zeros(1, c)])
        out = x.new_zeros(n + 1, c)
        for (_, _, classes), (wis, wos) in zip(groups, experts):
            for (cap, index), wi, wo in zip(classes, wis, wos):
                rows = padded.index_select(0, index).view(-1, cap, c)
                y = torch.bmm(F.gelu(torch.bmm(rows, wi), approximate="tanh"), wo)
                out = out.index_add(0, index, y.reshape(-1, c))
        return out[:n]

    def mowe(self, h, route, experts):
        """h [N, C], this rank's tokens -> [N, C]: each routed token through its expert (on the
        rank owning it), zero for the others."""
        if route.send is None:
            return self.expert_rows(h, route.groups, experts)
        x = Exchange.apply(h.index_select(0, route.send), route.send_splits, route.recv_splits)
        y = self.expert_rows(x, route.groups, experts)
        y = Exchange.apply(y, route.recv_splits, route.send_splits)
        return h.new_zeros(h.shape).index_add(0, route.send, y)

    @staticmethod
    def stack_experts(leaves, groups):
        """Per bucket, the stack's experts out of the step's (leaves), split by capacity class:
        one gather and one split per stack, whose gradients are one scatter and one concatenation
        into the small leaves."""
        out = []
        for (wi, wo), (select, sizes, _) in zip(leaves, groups):
            out.append((wi.index_select(0, select).split(sizes),
                        wo.index_select(0, select).split(sizes)))
        return out

    def ffn(self, x, s, route, experts):
        P = self.params
        h = self.norm(x, P[f"{s}_ffn_norm"])
        if route is not None:
            return x + self.mowe(h.reshape(-1, h.shape[-1]), route, experts).view_as(x)
        a, g = torch.matmul(h, P[f"{s}_ffn_wi"]).chunk(2, -1)
        return x + torch.matmul(F.gelu(a, approximate="tanh") * g, P[f"{s}_ffn_wo"])

    def stack(self, name, x, bias, route, experts, memory=None, cross_bias=None):
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
            x = self.ffn(x, s, route if i in mowe else None, experts)
        return self.norm(x, P[f"{name}_final_norm"])

    def step_experts(self, batch, grad=True):
        """Per bucket (wi, wo): the rows of this rank's experts that the step's tokens use, as
        leaf tensors (their gradients are all the expert gradient there is)."""
        return [(wi.index_select(0, u).requires_grad_(grad), wo.index_select(0, u).requires_grad_(grad))
                for (wi, wo), u in zip(self.experts, batch["used_experts"])]

    def forward(self, batch, leaves):
        """Sum over this rank's target tokens of weight * (cross-entropy + z_loss * lse^2)."""
        P = self.params
        enc_bias = P["encoder_bias"][batch["enc_pos"]].permute(2, 0, 1)[None] + batch["enc_mask_add"]
        dec_bias = P["decoder_bias"][batch["dec_pos"]].permute(2, 0, 1)[None] + batch["dec_mask_add"]
        enc_route, dec_route = batch["enc_route"], batch["dec_route"]
        enc = self.stack("encoder", P["embedding"][batch["enc_ids"]], enc_bias, enc_route,
                         self.stack_experts(leaves, enc_route.groups))
        dec = self.stack("decoder", P["embedding"][batch["dec_ids"]], dec_bias, dec_route,
                         self.stack_experts(leaves, dec_route.groups), memory=enc,
                         cross_bias=batch["cross_mask_add"])
        logits = torch.matmul(dec.reshape(-1, self.dims.d), P["lm_head"])
        lse = torch.logsumexp(logits, -1)
        target = logits.gather(1, batch["targets"].reshape(-1, 1)).reshape(-1)
        w = batch["loss_weights"].reshape(-1)
        return (w * (lse - target + self.dims.z_loss * lse * lse)).sum()


def prepare(raw, dims, place, rank):
    """This rank's slice of a global batch with everything a step derives from the batch alone:
    masks as additive biases, position buckets, the routing of both stacks (the trainer's loader
    thread routes its batches the same way, before the step)."""
    world = place.world
    b = raw["enc_ids"].shape[0]
    lo, hi = rank * b // world, (rank + 1) * b // world
    x = {k: v[lo:hi] for k, v in raw.items()}
    t_enc, t_dec = x["enc_ids"].shape[1], x["dec_ids"].shape[1]
    neg = -1e9
    enc_keys = (x["enc_mask"] == 0).float()[:, None, None, :] * neg  # [B, 1, 1, I]
    causal = torch.triu(torch.ones(t_dec, t_dec, dtype=torch.bool), 1).float() * neg
    dec_keys = (x["dec_mask"] == 0).float()[:, None, None, :] * neg
    routes = [route_stack(raw[f"{s}_bucket"], raw[f"{s}_expert"], raw[f"{s}_mask"], dims, place, rank)
              for s in ("enc", "dec")]
    # Both stacks' experts of each bucket (gathered once per step), and per stack the positions in
    # that list of its classes' experts, class after class.
    used_experts = []
    for bucket, experts in enumerate(place.local_experts()):
        classes = routes[0].groups[bucket] + routes[1].groups[bucket]
        used = torch.unique(torch.cat([e for e, _, _ in classes])) if classes else \
            torch.zeros(0, dtype=torch.long)
        local = torch.full((experts,), -1, dtype=torch.long)
        local[used] = torch.arange(used.numel())
        for route in routes:
            classes = route.groups[bucket]
            select = torch.cat([local[e] for e, _, _ in classes]) if classes else \
                torch.zeros(0, dtype=torch.long)
            route.groups[bucket] = (select, [e.numel() for e, _, _ in classes],
                                    [(cap, index) for _, cap, index in classes])
        used_experts.append(used)
    return {
        "enc_ids": x["enc_ids"].long(), "dec_ids": x["dec_ids"].long(),
        "targets": x["targets"].long(), "loss_weights": x["loss_weights"].float(),
        "enc_mask_add": enc_keys, "cross_mask_add": enc_keys,
        "dec_mask_add": dec_keys + causal[None, None],
        "enc_pos": relative_buckets(t_enc, t_enc, True, dims),
        "dec_pos": relative_buckets(t_dec, t_dec, False, dims),
        "enc_route": routes[0], "dec_route": routes[1], "used_experts": used_experts,
    }


def load_batches(path):
    tensors, meta = read_safetensors(path)
    n = int(meta["batches"])
    names = ("enc_ids", "enc_mask", "enc_bucket", "enc_expert", "dec_ids", "dec_mask", "dec_bucket",
             "dec_expert", "targets", "loss_weights")
    batches = [{k: tensors[f"b{i}.{k}"] for k in names} for i in range(n)]
    return batches, tensors, meta


# ---- the optimizer ----------------------------------------------------------------------------
class FlatAdamW:
    """AdamW over flat buffers, the trainer's maths (see the header): the dense parameters become
    views of one buffer and their gradients views of another; the experts are views of a third
    (T5.expert_buffer); m and v are flat alike. An update is one pass over each buffer, a chunk at
    a time."""

    CHUNK = 1 << 16  # elements: a chunk's p, g, m, v and the scratch (1.25 MiB) stay in L2

    def __init__(self, model, dims, world):
        self.dims, self.world = dims, world
        dense = list(model.params.values())
        self.value = self.flatten(dense)
        self.grad = torch.zeros_like(self.value)
        offset = 0
        for p in dense:
            p.grad = self.grad[offset:offset + p.numel()].view_as(p)
            offset += p.numel()
        self.m, self.v = torch.zeros_like(self.value), torch.zeros_like(self.value)
        self.expert_value = model.expert_buffer
        self.expert_m = torch.zeros_like(self.expert_value)
        self.expert_v = torch.zeros_like(self.expert_value)
        self.experts = []  # per bucket, per matrix: (value, m, v) views
        offset = 0
        for pair in model.experts:
            views = []
            for t in pair:
                n = t.numel()
                views.append((t, self.expert_m[offset:offset + n].view_as(t),
                              self.expert_v[offset:offset + n].view_as(t)))
                offset += n
            self.experts.append(views)
        self.scratch = torch.empty(self.CHUNK)

    @staticmethod
    def flatten(tensors):
        """One buffer holding the tensors, which become views of it."""
        flat = torch.empty(sum(t.numel() for t in tensors))
        offset = 0
        for t in tensors:
            n = t.numel()
            flat[offset:offset + n].copy_(t.detach().reshape(-1))
            t.data = flat[offset:offset + n].view_as(t)
            offset += n
        return flat

    def coefficients(self, step, grad_scale):
        """runtime/op_checks.h adamw_coeffs for update number `step` + 1 (1-based), rearranged
        as m_hat / (sqrt(v_hat) + eps) = (sqrt(1 - b2^t) / (1 - b1^t)) m / (sqrt(v) + eps
        sqrt(1 - b2^t)), the same quantity."""
        d = self.dims
        b1, b2 = d.betas
        t = step + 1
        lr = d.learning_rate(step)
        root_bias2 = math.sqrt(1.0 - b2 ** t)
        return {"b1": b1, "b2": b2, "scale": grad_scale, "decay": -lr * d.weight_decay,
                "eps": d.adam_eps * root_bias2, "step": -lr * root_bias2 / (1.0 - b1 ** t)}

    def update(self, p, g, m, v, c):
        """The full update of flat p with gradient g (scaled in place), chunk by chunk."""
        for o in range(0, p.numel(), self.CHUNK):
            pc, gc, mc, vc = p[o:o + self.CHUNK], g[o:o + self.CHUNK], m[o:o + self.CHUNK], \
                v[o:o + self.CHUNK]
            t = self.scratch[:pc.numel()]
            if c["scale"] != 1.0:
                gc.mul_(c["scale"])
            mc.lerp_(gc, 1.0 - c["b1"])  # b1 m + (1 - b1) g
            vc.mul_(c["b2"]).addcmul_(gc, gc, value=1.0 - c["b2"])
            torch.sqrt(vc, out=t).add_(c["eps"])
            if c["decay"]:
                pc.add_(pc, alpha=c["decay"])
            pc.addcdiv_(mc, t, value=c["step"])

    def update_without_gradient(self, p, m, v, c):
        """The update of rows whose gradient is zero: m = b1 m and v = b2 v exactly as the full
        update computes them with g = 0, and the same step, without reading a gradient."""
        for o in range(0, p.numel(), self.CHUNK):
            pc, mc, vc = p[o:o + self.CHUNK], m[o:o + self.CHUNK], v[o:o + self.CHUNK]
            t = self.scratch[:pc.numel()]
            mc.mul_(c["b1"])
            vc.mul_(c["b2"])
            torch.sqrt(vc, out=t).add_(c["eps"])
            if c["decay"]:
                pc.add_(pc, alpha=c["decay"])
            pc.addcdiv_(mc, t, value=c["step"])

    def grad_scale(self, leaves):
        """The clipping factor of the global gradient norm: the dense gradients (the same on
        every rank) once, the experts' rows summed over the ranks that own them."""
        dense = float(torch.dot(self.grad, self.grad))
        experts = sum(float(torch.dot(g.reshape(-1), g.reshape(-1)))
                      for pair in leaves for g in (x.grad for x in pair) if g is not None)
        if self.world > 1:
            t = torch.tensor([experts], dtype=torch.float64)
            dist.all_reduce(t)
            experts = float(t)
        norm, clip = math.sqrt(dense + experts), self.dims.clip
        if clip == 0 or norm == 0:
            return 1.0
        return min(1.0, clip / norm)  # runtime/optimizer.cc clip_scale

    def allreduce(self):
        """The dense gradients summed over the ranks, in one call."""
        if self.world > 1:
            dist.all_reduce(self.grad)

    def step(self, step, leaves, used):
        """Update number step + 1 from the dense gradients (allreduced) and the experts' leaves
        (rows `used` per bucket); the dense gradients are zeroed for the next backward."""
        c = self.coefficients(step, self.grad_scale(leaves))
        self.update(self.value, self.grad, self.m, self.v, c)
        # Rows with tokens: the full update on copies, written back after the pass below.
        touched = []
        for views, pair, rows in zip(self.experts, leaves, used):
            for (value, m, v), leaf in zip(views, pair):
                if leaf.grad is None or rows.numel() == 0:
                    continue
                copies = [t.index_select(0, rows) for t in (value, m, v)]
                self.update(*(t.reshape(-1) for t in (copies[0], leaf.grad, copies[1], copies[2])), c)
                touched.append(((value, m, v), rows, copies))
        if not self.dims.lazy_experts:
            self.update_without_gradient(self.expert_value, self.expert_m, self.expert_v, c)
        for targets, rows, copies in touched:
            for target, copy in zip(targets, copies):
                target.index_copy_(0, rows, copy)
        self.grad.zero_()


def compare_weights(model, initial, final, world):
    """Per trainer parameter: the largest |trainer - baseline| after the same steps and the
    largest |change| the trainer's steps made, over every rank's part, as {name: [diff, change]}."""
    names, diffs, changes = [], [], []
    start = {name: theirs for name, theirs, _ in model.trainer_pairs(initial)}
    for name, theirs, ours in model.trainer_pairs(final):
        names.append(name)
        diffs.append(float((ours - theirs).abs().max()) if theirs.numel() else 0.0)
        changes.append(float((theirs - start[name]).abs().max()) if theirs.numel() else 0.0)
    missing = sorted(set(final) - set(names))
    if missing:
        raise SystemExit(f"trainer parameters the baseline does not map: {missing}")
    t = torch.tensor([diffs, changes], dtype=torch.float64)
    if world > 1:
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return {n: [d, c] for n, d, c in zip(names, t[0].tolist(), t[1].tolist())}


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


def all_ranks(values, op, world):
    t = torch.tensor(values, dtype=torch.float64)
    if world > 1:
        dist.all_reduce(t, op=op)
    return t.tolist()


def check(args, raw, tensors, meta, dims):
    """The --check figures: parameter count, FLOPs per batch, first loss of --weights."""
    place = Placement(dims, tensors, meta, 0, 1)
    model = T5(dims, place)
    params = sum(p.numel() for p in model.params.values()) + dims.expert_parameters()
    flops = [dims.step_flops(b)[0] for b in raw]
    result = {"params": params, "flops": flops, "trainer_flops": tensors["model_flops"].tolist()}
    if args.weights:
        model.load_trainer_weights(read_safetensors(args.weights)[0])
        with torch.no_grad():
            batch = prepare(raw[0], dims, place, 0)
            total = model(batch, model.step_experts(batch, grad=False))
        result["loss"] = total.item() / float(raw[0]["loss_weights"].sum())
    print("CHECK " + json.dumps(result))


def train(args, raw, tensors, meta, dims, rank, world, threads):
    place = Placement(dims, tensors, meta, rank, world)
    model = T5(dims, place)
    dense_params = sum(p.numel() for p in model.params.values())
    params = dense_params + dims.expert_parameters()
    initial = None
    if args.weights:
        initial = read_safetensors(args.weights)[0]
        model.load_trainer_weights(initial)
    opt = FlatAdamW(model, dims, world)
    if world > 1:
        dist.broadcast(opt.value, 0)  # one set of dense weights, whatever each rank drew

    total_steps = args.warmup + args.steps
    if total_steps > len(raw):
        raise SystemExit(f"{args.batches} holds {len(raw)} batches, {total_steps} asked for")
    batches = [prepare(raw[i], dims, place, rank) for i in range(total_steps)]
    targets = [float(raw[i]["loss_weights"].sum()) for i in range(total_steps)]
    counted = [dims.step_flops(raw[i]) for i in range(total_steps)]

    def measure_peak():
        """Every rank at once, as they share the cores in a step."""
        if world > 1:
            dist.barrier()
        return all_ranks([sgemm_peak() * 1e9], dist.ReduceOp.SUM, world)[0]

    # Before and after the steps, the better of the two (another job may run during either).
    peak = measure_peak()

    sums = {"forward": 0.0, "backward": 0.0, "allreduce": 0.0, "optimizer": 0.0, "wall": 0.0}
    tokens = flops = 0.0
    for i in range(total_steps):
        t0 = time.perf_counter()
        leaves = model.step_experts(batches[i])
        # This rank's share of the global mean: the sum over its targets over the global count,
        # so that the gradients summed over the ranks are those of the global mean.
        loss = model(batches[i], leaves) / targets[i]
        t1 = time.perf_counter()
        loss.backward()
        t2 = time.perf_counter()
        opt.allreduce()
        t3 = time.perf_counter()
        opt.step(i, leaves, batches[i]["used_experts"])
        t4 = time.perf_counter()
        if rank == 0:
            print(f"step {i + 1}{' (warm-up)' if i < args.warmup else ''}: local loss "
                  f"{loss.item():.6f}, {t4 - t0:.3f} s", flush=True)
        if i < args.warmup:
            continue
        for key, seconds in (("forward", t1 - t0), ("backward", t2 - t1), ("allreduce", t3 - t2),
                             ("optimizer", t4 - t3), ("wall", t4 - t0)):
            sums[key] += seconds
        flops += counted[i][0]
        tokens += counted[i][1]

    if args.compare_weights:
        if initial is None:
            raise SystemExit("--compare-weights needs the initial --weights")
        result = compare_weights(model, initial, read_safetensors(args.compare_weights)[0], world)
        if rank == 0:
            print("PARAMS " + json.dumps(result), flush=True)

    peak = max(peak, measure_peak())
    n = args.steps
    op_max = dist.ReduceOp.MAX if world > 1 else None
    wall, fwd, bwd, allreduce, optim = all_ranks(
        [sums["wall"], sums["forward"] / n, sums["backward"] / n, sums["allreduce"] / n,
         sums["optimizer"] / n], op_max, world)
    rss = [0.0] * world
    rss[rank] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    rss = all_ranks(rss, dist.ReduceOp.SUM if world > 1 else None, world)
    if rank != 0:
        return
    tps, mfu = tokens / wall, flops / wall / peak
    pools = ", ".join(f"{k}={os.environ.get(k, '')}" for k in
                      ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "OMP_WAIT_POLICY"))
    print(f"torch {torch.__version__}: {world} ranks x {threads} threads ({pools}), "
          f"{params} parameters ({dense_params} dense)\n"
          f"{n} measured steps after {args.warmup} warm-up: {tokens / n:.0f} real tokens/step, "
          f"{tps:.1f} real tokens/s\n"
          f"step {wall / n:.4f} s: forward {fwd:.4f}, backward {bwd:.4f} (all-to-all included), "
          f"allreduce {allreduce:.4f}, optimizer {optim:.4f} (mean per step, max over ranks)\n"
          f"model FLOPs/step {flops / n:.4e}; MFU {100 * mfu:.2f}% of the sgemm peak "
          f"{peak / 1e9:.1f} GFLOP/s (all ranks)\n"
          f"peak RSS per rank (MB): {', '.join(f'{r:.0f}' for r in rss)}")
    print("BENCH_STEP " + json.dumps({
        "impl": "torch", "ranks": world, "threads": threads, "warmup": args.warmup, "steps": n,
        "params": params, "tokens_per_step": tokens / n, "tokens_per_s": tps, "step_s": wall / n,
        "forward_s": fwd, "backward_s": bwd, "allreduce_s": allreduce, "optimizer_s": optim,
        "model_flops_per_step": flops / n, "peak_gflops": peak / 1e9, "mfu": mfu,
        "peak_rss_mb": [round(r) for r in rss]}), flush=True)


def main():
    args, rank, world = ARGS, RANK, WORLD
    torch.set_num_threads(THREADS)
    torch.manual_seed(1)
    raw, tensors, meta = load_batches(args.batches)
    dims = Dims(json.loads(meta["config"]))
    if args.check:
        return check(args, raw, tensors, meta, dims)
    if world > 1:
        os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
        os.environ.setdefault("MASTER_PORT", "29531")
        dist.init_process_group("gloo", rank=rank, world_size=world)
    train(args, raw, tensors, meta, dims, rank, world, THREADS)
    if world > 1:
        # Without this gloo's threads are torn down by exit() while still running, and a rank
        # can abort with "terminate called without an active exception" after its work is done.
        dist.barrier()
        dist.destroy_process_group()


if __name__ == "__main__":
    sys.exit(main())
