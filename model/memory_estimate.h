// One rank's memory for training a configured model, estimated from the config and the world
// size before anything is allocated: `mowe_pretrain --describe` prints it, and Job refuses a job
// whose estimate exceeds what this host has available per rank, naming the fields that drive it
// (instead of a bare std::bad_alloc, or a failed allocation naming no field, minutes later).
//
// The estimate, float32 (4 bytes a scalar), with b = ceil(training.global_batch_size / ranks)
// sequences per rank, T = data.input_length, S = data.target_length (or T5's derivation), C =
// d_model, F = d_ff, HD = num_heads * d_kv, H = num_heads, V = vocab_size, Le/Ld the encoder and
// decoder blocks:
//   parameters    the dense ones, replicated: 2 V C (embedding, output projection), 4 C HD + C
//                 per attention (Le + 2 Ld of them), 3 C F + C per dense feed-forward block, C per
//                 MoWE block, K H + C per stack; and this rank's share of the experts: per bucket,
//                 experts_per_block * ceil(num_blocks / ranks) experts (one block when the ranks
//                 outnumber the blocks) of (2 or 3, by the bucket's form) C expert_d_ff, once,
//                 or per MoWE layer when share_expert_parameters is false.
//   gradients     the same for every trainable parameter (frozen experts have none).
//   optimizer     AdamW: 2 per trainable scalar. Adafactor: a matrix [R, X] with both sides at
//                 least 128, and every stacked [E, R, X] expert matrix, keeps R + X (E (R + X));
//                 anything else keeps one per scalar.
//   staging       the gradient allreduce's copy of the dense gradients small enough to share
//                 a parallel.grad_bucket_mb bucket (larger ones are reduced in place): at most.
//   activations   what the forward pass keeps for the backward pass, per stack of N = b L tokens
//                 (L = T or S): the embedding N C; per attention 2 N C + N + 4 N HD and the
//                 scores b H L Lk (Lk = L, or T for cross-attention, whose keys and values are 2 b
//                 T HD); per dense feed-forward 2 N C + N + 3 N F; per MoWE layer 3 N C + N + N
//                 max over the buckets of (1, or 2 when gated) expert_d_ff (as many expert rows
//                 as local tokens, a balanced plan); the position bias and its gradient 2 H L^2,
//                 the final norm N C + N; the gradients the backward pass keeps, N C per stack
//                 plus the decoder output's and encoder output's; the logits and their gradient
//                 2 b S V; plus the largest sub-layer's backward temporaries (scratch).
// Not counted (small for these models): the tokenized corpus every rank holds, routing tables
// (8 bytes per routing id), loader batches, communication library buffers, allocator slack.
// Sums are doubles: exact below 2^53 bytes, and never wrapping for the sizes validation allows.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "comm/communicator.h"
#include "runtime/proto/config.pb.h"

namespace mowe::model {

// One part of the model or of the step, with the fields that size it.
struct MemoryTerm {
  std::string name;     // "token embedding and output projection"
  std::string drivers;  // "model.vocab_size = 32128 x model.d_model = 768"
  double parameters = 0, gradients = 0, optimizer = 0, staging = 0, activations = 0;  // bytes
  double bytes() const { return parameters + gradients + optimizer + staging + activations; }
};

struct MemoryEstimate {
  int world_size = 1;
  int64_t local_batch = 0;  // sequences per rank and step
  int64_t input_length = 0, target_length = 0;
  std::string optimizer;          // "adafactor" or "adamw"
  std::vector<MemoryTerm> terms;  // in report order
  double parameters() const;
  double gradients() const;
  double optimizer_state() const;
  double staging() const;
  double activations() const;
  double total() const;
};

MemoryEstimate estimate_memory(const config::Config& config, int world_size);

// The estimate as a table: one line per term with its fields, then the total by kind.
std::string memory_report(const MemoryEstimate& estimate);

// "1.50 GiB", "12.0 MiB": bytes for messages.
std::string format_bytes(double bytes);

// Memory this process may use: MemAvailable from /proc/meminfo, lowered to what the cgroup's
// memory.max leaves (a Slurm or container limit), or sysconf's available pages without
// /proc/meminfo. `source` says which.
struct HostMemory {
  double available_bytes = 0;
  std::string source;
};
HostMemory available_host_memory();

// Ranks of `comm` running on this host (by host name). Collective.
int ranks_on_this_host(comm::Communicator& comm);
// This rank's place among them: local rank (0-based, in rank order) and their number. Collective.
struct HostPosition {
  int local_rank = 0, local_ranks = 1;
};
HostPosition host_position(comm::Communicator& comm);

// Throws Error, one line: the estimate per rank, the largest terms with their fields, and what is
// available to each of the `ranks_on_host` ranks sharing `host`; nothing when it fits.
void check_memory_fits(const MemoryEstimate& estimate, const HostMemory& host, int ranks_on_host);

}  // namespace mowe::model
