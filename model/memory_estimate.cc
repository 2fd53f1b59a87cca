#include "model/memory_estimate.h"

#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <initializer_list>
#include <iterator>
#include <tuple>

#include "data/span_lengths.h"
#include "model/expert_form.h"
#include "runtime/check.h"
#include "runtime/hash.h"
#include "runtime/optimizer.h"

namespace mowe::model {
namespace {

constexpr double kScalarBytes = 4;  // float32 parameters, gradients, state and activations

// Parameters, gradients and optimizer state of tensors added to one term; dense tensors are
// remembered for the allreduce staging.
class TensorCount {
 public:
  TensorCount(MemoryTerm* term, bool adamw, std::vector<double>* dense_tensor_bytes)
      : term_(term), adamw_(adamw), dense_(dense_tensor_bytes) {}

  // `copies` tensors of shape `dims`; trainable ones have a gradient and optimizer state.
  void add(double copies, std::initializer_list<double> dims, bool trainable = true) {
    double numel = 1;
    for (double d : dims) numel *= d;
    term_->parameters += copies * numel * kScalarBytes;
    if (dense_ != nullptr)
      for (double c = 0; c < copies; ++c) dense_->push_back(numel * kScalarBytes);
    if (!trainable) return;
    term_->gradients += copies * numel * kScalarBytes;
    term_->optimizer += copies * state(dims, numel) * kScalarBytes;
  }

 private:
  // Scalars of optimizer state of one tensor (runtime/optimizer.h: AdamW's m and v; Adafactor's
  // factored second moments, as Adafactor::factored decides).
  double state(std::initializer_list<double> dims, double numel) const {
    if (adamw_) return 2 * numel;
    const std::vector<double> d(dims);
    const auto min_side = static_cast<double>(AdafactorOptions{}.min_dim_size_to_factor);
    const bool factored = d.size() >= 3 || (d.size() == 2 && std::min(d[0], d[1]) >= min_side);
    if (!factored) return numel;
    const double rows = d[d.size() - 2], cols = d[d.size() - 1];
    const double slices = numel / (rows * cols);
    // Stacked slices (experts) also keep the f64 log-decay of their last update: two scalars.
    return slices * (rows + cols) + (d.size() >= 3 ? 2 * slices : 0);
  }

  MemoryTerm* term_;
  bool adamw_;
  std::vector<double>* dense_;
};

double sum_of(const std::vector<MemoryTerm>& terms, double MemoryTerm::*field) {
  double total = 0;
  for (const MemoryTerm& t : terms) total += t.*field;
  return total;
}

}  // namespace

double MemoryEstimate::parameters() const {
  return sum_of(terms, &MemoryTerm::parameters);
}
double MemoryEstimate::gradients() const {
  return sum_of(terms, &MemoryTerm::gradients);
}
double MemoryEstimate::optimizer_state() const {
  return sum_of(terms, &MemoryTerm::optimizer);
}
double MemoryEstimate::staging() const {
  return sum_of(terms, &MemoryTerm::staging);
}
double MemoryEstimate::activations() const {
  return sum_of(terms, &MemoryTerm::activations);
}
double MemoryEstimate::total() const {
  return parameters() + gradients() + optimizer_state() + staging() + activations();
}

std::string format_bytes(double bytes) {
  static const char* kUnits[] = {"bytes", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  int unit = 0;
  while (bytes >= 1024 && unit + 1 < static_cast<int>(std::size(kUnits))) bytes /= 1024, ++unit;
  if (unit == 0) return fmt::format("{:.0f} bytes", bytes);
  const int decimals = bytes < 10 ? 2 : bytes < 100 ? 1 : 0;  // three significant digits
  return fmt::format("{:.{}f} {}", bytes, decimals, kUnits[unit]);
}

MemoryEstimate estimate_memory(const config::Config& config, int world_size) {
  MOWE_CHECK(world_size >= 1, "a memory estimate for {} ranks", world_size);
  const config::ModelConfig& m = config.model();
  const config::MoweConfig& w = m.mowe();
  const config::DataConfig& data = config.data();
  MemoryEstimate e;
  e.world_size = world_size;
  e.local_batch = (config.training().global_batch_size() + world_size - 1) / world_size;
  e.input_length = data.input_length();
  e.target_length = data.target_length();
  if (e.target_length == 0)
    e.target_length = data::t5_span_lengths(data.input_length(), data.noise_density(),
                                            data.mean_noise_span_length())
                          .targets_length;
  const bool adamw = config.training().optimizer() == config::TrainingConfig::ADAMW;
  e.optimizer = adamw ? "adamw" : "adafactor";

  const double c = m.d_model(), f = m.d_ff(), v = m.vocab_size(), h = m.num_heads();
  const double hd = h * m.d_kv(), k = m.relative_attention_num_buckets();
  const double le = m.num_encoder_layers(), ld = m.num_decoder_layers();
  const double me = w.encoder_layers_size(), md = w.decoder_layers_size();
  const double p = world_size, b = static_cast<double>(e.local_batch);
  const double t = static_cast<double>(e.input_length), s = static_cast<double>(e.target_length);
  std::vector<double> dense_tensors;

  MemoryTerm embedding{
      "token embedding and output projection",
      fmt::format("model.vocab_size = {} x model.d_model = {}", m.vocab_size(), m.d_model())};
  TensorCount(&embedding, adamw, &dense_tensors).add(2, {v, c});

  MemoryTerm blocks{
      "dense blocks",
      fmt::format("model.d_model = {}, model.d_ff = {}, model.num_heads x "
                  "model.d_kv = {}, over {} + {} blocks (model.num_encoder_layers, "
                  "model.num_decoder_layers)",
                  m.d_model(), m.d_ff(), hd, m.num_encoder_layers(), m.num_decoder_layers())};
  {
    TensorCount add(&blocks, adamw, &dense_tensors);
    add.add(2, {k, h});  // relative position bias of each stack
    add.add(2, {c});     // final norms
    const double attentions = le + 2 * ld;
    add.add(attentions, {c});
    add.add(3 * attentions, {c, hd});
    add.add(attentions, {hd, c});
    const double ffns = le - me + ld - md;
    add.add(ffns, {c});
    add.add(2 * ffns, {c, f});
    add.add(ffns, {f, c});
    add.add(me + md, {c});  // the MoWE layers' pre-norms
  }

  MemoryTerm experts{"experts on this rank", ""};
  double widest_expert = 0;  // max F over the buckets
  double widest_saved = 0;   // max (1 or 2) F: the pre-activations one expert row keeps
  if (me + md > 0) {
    TensorCount add(&experts, adamw, nullptr);
    const double sets = w.share_expert_parameters() ? 1 : me + md;
    double largest = -1;
    for (int i = 0; i < w.buckets_size(); ++i) {
      const config::BucketConfig& bucket = w.buckets(i);
      const double inputs = expert_input_matrices(bucket_activation(w, i));
      const double blocks_here =
          world_size <= bucket.num_blocks() ? std::ceil(bucket.num_blocks() / p) : 1;
      const double local = bucket.experts_per_block() * blocks_here;
      const double ff = bucket.expert_d_ff();
      const double before = experts.bytes();
      add.add(sets * inputs, {local, c, ff}, !w.freeze_experts());
      add.add(sets, {local, ff, c}, !w.freeze_experts());
      widest_expert = std::max(widest_expert, ff);
      widest_saved = std::max(widest_saved, inputs * ff);
      if (experts.bytes() - before <= largest) continue;
      largest = experts.bytes() - before;
      experts.drivers = fmt::format(
          "model.mowe.buckets[{}]: {:.0f} of its {} experts per rank x expert_d_ff {} x "
          "model.d_model {}{}{}",
          i, local, int64_t{bucket.num_blocks()} * bucket.experts_per_block(), bucket.expert_d_ff(),
          m.d_model(),
          sets > 1 ? fmt::format(" x {:.0f} MoWE layers (model.mowe.share_expert_parameters is "
                                 "false)",
                                 sets)
                   : "",
          w.buckets_size() > 1 ? fmt::format(", the largest of {} buckets", w.buckets_size()) : "");
    }
  }

  // Dense gradients that share a bucket with others are copied into a staging buffer; a tensor
  // larger than a bucket is always alone in its own and reduced in place (comm/grad_allreduce).
  const double bucket_bytes =
      std::clamp(config.parallel().grad_bucket_mb() * (1 << 20), 1.0, std::ldexp(1.0, 62));
  MemoryTerm staging{"gradient allreduce staging",
                     fmt::format("dense gradients of at most parallel.grad_bucket_mb = {} MiB",
                                 config.parallel().grad_bucket_mb())};
  for (double bytes : dense_tensors)
    if (bytes <= bucket_bytes) staging.staging += bytes;

  // Activations, in scalars: see the header for what each sub-layer keeps.
  const double ne = b * t, nd = b * s;
  const std::string batch =
      fmt::format("{} sequences per rank (training.global_batch_size = {} over {} ranks)",
                  e.local_batch, config.training().global_batch_size(), world_size);
  MemoryTerm logits{"output logits", fmt::format("{} x data.target_length {} x model.vocab_size {}",
                                                 batch, e.target_length, m.vocab_size())};
  logits.activations = (2 * nd * v + 2 * nd) * kScalarBytes;  // logits, their gradient, loss, lse

  MemoryTerm scores{"attention scores",
                    fmt::format("{} x model.num_heads {} x data.input_length {} squared (and "
                                "data.target_length {})",
                                batch, m.num_heads(), e.input_length, e.target_length)};
  scores.activations = (b * h * (le * t * t + ld * s * s + ld * s * t)  // probabilities
                        + 2 * h * (t * t + s * s))                      // position bias, gradient
                       * kScalarBytes;

  MemoryTerm other{"other activations",
                   fmt::format("{} x {} + {} tokens x model.d_model {} and model.d_ff {}, over {} "
                               "+ {} blocks",
                               batch, e.input_length, e.target_length, m.d_model(), m.d_ff(),
                               m.num_encoder_layers(), m.num_decoder_layers())};
  auto attention = [&](double n) { return 2 * n * c + n + 4 * n * hd; };
  auto dense_ffn = [&](double n) { return 2 * n * c + n + 3 * n * f; };
  auto mowe_ffn = [&](double n) { return 3 * n * c + n + n * widest_saved; };
  double kept = 0;
  kept += ne * c + le * attention(ne) + (le - me) * dense_ffn(ne) + me * mowe_ffn(ne);
  kept += ne * c + ne;  // final norm
  kept += nd * c + ld * attention(nd) + (ld - md) * dense_ffn(nd) + md * mowe_ffn(nd);
  kept += ld * (2 * nd * c + nd + 2 * nd * hd + 2 * ne * hd);  // cross-attention
  kept += nd * c + nd;
  kept += ne * c + nd * c     // the gradient flowing back through each stack
          + nd * c + ne * c;  // of the decoder output and of the encoder output
  // The largest backward temporaries of one sub-layer (scratch, rewound after each); attention
  // dropout adds one [L, Lk] buffer of dropped-out probabilities next to the score gradient.
  double scratch = 0;
  const double score_buffers = m.dropout_rate() > 0 ? 2 : 1;
  for (const auto& [n, len, dense_blocks, mowe_blocks] :
       {std::tuple{ne, t, le - me, me}, std::tuple{nd, s, ld - md, md}}) {
    scratch =
        std::max(scratch, n * (3 * c + 2 * hd) + 2 * b * len * hd + score_buffers * len * len);
    if (dense_blocks > 0) scratch = std::max(scratch, n * (3 * c + 3 * f));
    if (mowe_blocks > 0) scratch = std::max(scratch, n * (4 * c + 3 * widest_expert));
  }
  if (ld > 0)
    scratch = std::max(scratch, nd * (3 * c + 2 * hd) + 2 * b * t * hd + score_buffers * s * t);
  other.activations = (kept + scratch) * kScalarBytes;

  e.terms = {embedding, blocks, experts, staging, logits, scores, other};
  if (me + md == 0) e.terms.erase(e.terms.begin() + 2);
  return e;
}

std::string memory_report(const MemoryEstimate& e) {
  std::string out = fmt::format(
      "memory per rank at {} rank{} (estimate: float32, {}, {} sequences of {} + {} tokens per "
      "rank)\n",
      e.world_size, e.world_size == 1 ? "" : "s", e.optimizer, e.local_batch, e.input_length,
      e.target_length);
  for (const MemoryTerm& t : e.terms)
    out += fmt::format("  {:<38} {:>10}  ({})\n", t.name, format_bytes(t.bytes()), t.drivers);
  out += fmt::format(
      "  {:<38} {:>10}  (parameters {}, gradients {}, optimizer state {}, allreduce staging {}, "
      "activations {})\n",
      "total", format_bytes(e.total()), format_bytes(e.parameters()), format_bytes(e.gradients()),
      format_bytes(e.optimizer_state()), format_bytes(e.staging()), format_bytes(e.activations()));
  return out;
}

HostMemory available_host_memory() {
  HostMemory host;
  std::ifstream meminfo("/proc/meminfo");
  for (std::string line; std::getline(meminfo, line);) {
    double kib = 0;
    if (std::sscanf(line.c_str(), "MemAvailable: %lf kB", &kib) == 1) {
      host = {kib * 1024, "MemAvailable in /proc/meminfo"};
      break;
    }
  }
  if (host.source.empty()) {
    const long pages = ::sysconf(_SC_AVPHYS_PAGES), page = ::sysconf(_SC_PAGESIZE);
    host = {static_cast<double>(pages) * static_cast<double>(page), "sysconf(_SC_AVPHYS_PAGES)"};
  }
  // A cgroup v2 limit (Slurm's, a container's) can leave less than the host has free.
  std::ifstream self("/proc/self/cgroup");
  for (std::string line; std::getline(self, line);) {
    if (line.rfind("0::", 0) != 0) continue;
    const std::string dir = "/sys/fs/cgroup" + line.substr(3);
    std::ifstream max_file(dir + "/memory.max"), current_file(dir + "/memory.current");
    double limit = 0, current = 0;
    if ((max_file >> limit) && (current_file >> current) && limit - current < host.available_bytes)
      host = {std::max(0.0, limit - current), "memory.max of cgroup " + line.substr(3)};
  }
  return host;
}

int ranks_on_this_host(comm::Communicator& comm) {
  return host_position(comm).local_ranks;
}

HostPosition host_position(comm::Communicator& comm) {
  char name[256] = {};
  ::gethostname(name, sizeof name - 1);
  // FNV-1a of the host name, cut to 52 bits so that a double holds it exactly.
  const uint64_t hash = fnv1a(name);
  const double mine = static_cast<double>(hash & ((uint64_t{1} << 52) - 1));
  std::vector<double> hosts(comm.size(), 0.0);
  hosts[comm.rank()] = mine;
  comm.allreduce(Tensor(hosts.data(), DType::F64, Device::CPU, {comm.size()}), comm::ReduceOp::Sum);
  return {static_cast<int>(std::count(hosts.begin(), hosts.begin() + comm.rank(), mine)),
          static_cast<int>(std::count(hosts.begin(), hosts.end(), mine))};
}

void check_memory_fits(const MemoryEstimate& e, const HostMemory& host, int ranks_on_host) {
  const double per_rank = host.available_bytes / std::max(1, ranks_on_host);
  if (e.total() <= per_rank) return;
  std::vector<const MemoryTerm*> largest;
  for (const MemoryTerm& t : e.terms) largest.push_back(&t);
  std::sort(largest.begin(), largest.end(),
            [](const MemoryTerm* a, const MemoryTerm* b) { return a->bytes() > b->bytes(); });
  // The terms that make up most of it, at most three.
  std::string terms;
  double covered = 0;
  for (size_t i = 0; i < largest.size() && i < 3 && covered < 0.9 * e.total(); ++i) {
    terms += fmt::format("{}{} {} ({})", i ? "; " : "", largest[i]->name,
                         format_bytes(largest[i]->bytes()), largest[i]->drivers);
    covered += largest[i]->bytes();
  }
  const std::string share = ranks_on_host > 1
                                ? fmt::format("to each of the {} ranks on this host", ranks_on_host)
                                : "on this host";
  throw UserError(fmt::format(
      "this job needs about {} per rank at {} rank{}, but {} is available {} ({} {}): {}; reduce "
      "these fields, or spread the experts and the batch over more ranks (mowe_pretrain "
      "--describe shows the whole estimate)",
      format_bytes(e.total()), e.world_size, e.world_size == 1 ? "" : "s", format_bytes(per_rank),
      share, format_bytes(host.available_bytes), host.source, terms));
}

}  // namespace mowe::model
