#include "model/t5_model.h"

#include <algorithm>
#include <cmath>

#include "model/mowe_layer.h"
#include "model/mowe_layers.h"
#include "runtime/device.h"

namespace mowe::model {
namespace {

// Dropout sites: each dropout in the model has its own id, so masks never repeat across sites.
constexpr uint64_t kDecoderSites = uint64_t{1} << 20;
uint64_t embed_site(bool decoder) {
  return (decoder ? kDecoderSites : 0) + 1;
}
uint64_t final_site(bool decoder) {
  return (decoder ? kDecoderSites : 0) + 2;
}
uint64_t block_site(bool decoder, size_t block, int part) {
  return (decoder ? kDecoderSites : 0) + 16 * (block + 1) + 2 * part;
}
enum Part { kSelfAttention = 0, kCrossAttention = 1, kFeedForward = 2 };

class DenseFeedForward final : public FeedForward {
 public:
  DenseFeedForward(ParameterStore& store, const std::string& prefix, const config::ModelConfig& c)
      : ffn_(store, prefix, c.d_model(), c.d_ff(), c.layer_norm_epsilon()) {}
  Tensor forward(const StepContext& s, const Tensor& x_in, int64_t batch, uint64_t site) override {
    return ffn_.forward(s, x_in, batch, site, &saved_);
  }
  void backward(const StepContext& s, const Tensor& dx, int64_t batch, uint64_t site) override {
    ffn_.backward(s, saved_, dx, batch, site);
  }

 private:
  FfnSublayer ffn_;
  FfnSublayer::Saved saved_;
};

// A block's MoWE layer with the block's pre-norm, dropout and residual around it. The stack's
// Dispatch is computed once per step (T5Model::forward) and shared by its MoWE layers.
Weight add_norm(ParameterStore& store, const std::string& name, int64_t d_model) {
  store.add(name, {d_model}, ParamKind::Dense, {Init::Ones});
  return Weight::of(store, name);
}

class MoweFeedForward final : public FeedForward {
 public:
  MoweFeedForward(ParameterStore& store, const std::string& prefix, const config::ModelConfig& c,
                  const RoutingTable& table, const TokenRouter& router,
                  std::vector<ExpertShard> shards)
      : eps_(c.layer_norm_epsilon()),
        router_(router),
        norm_(add_norm(store, prefix + ".mowe.norm", c.d_model())),
        layer_(store, c.mowe(), table, c.d_model(), prefix, {}, std::move(shards)) {}

  const ExpertBank& experts() const { return layer_.experts(); }

  Tensor forward(const StepContext& s, const Tensor& x_in, int64_t batch, uint64_t site) override {
    x_in_ = x_in;
    normed_ = norm_forward(s, norm_, x_in, eps_, &rstd_);
    // The experts' hidden dropout takes site + 1, as the dense FFN's hidden dropout does.
    const ExpertDropout dropout{.rate = s.expert_dropout_rate,
                                .step_seed = s.dropout_seed,
                                .site = site + 1,
                                .first_example = s.first_example,
                                .batch = batch};
    Tensor out = layer_.forward(s.ctx, normed_, router_, *s.activations, dropout);
    dropout_examples_forward(s, out, batch, site);
    s.backend->axpy(s.ctx, 1.0, x_in, out);
    return out;
  }

  void backward(const StepContext& s, const Tensor& dx, int64_t batch, uint64_t site) override {
    Arena& scratch = *s.ctx.scratch;
    ArenaScope scope(scratch);
    Tensor dout = dropout_copy_backward(s, scratch, dx, batch, site);
    Tensor dnormed = scratch.alloc(dx.shape, dx.dtype);
    layer_.backward(s.ctx, dout, dnormed);
    Tensor dx_norm = scratch.alloc(dx.shape, dx.dtype);
    norm_backward(s, norm_, dnormed, x_in_, rstd_, dx_norm);
    s.backend->axpy(s.ctx, 1.0, dx_norm, dx);
  }

 private:
  double eps_;
  const TokenRouter& router_;
  Weight norm_;  // registered before the experts, so parameter order follows the block
  MoweLayer layer_;
  Tensor x_in_, normed_, rstd_;
};

bool contains(const google::protobuf::RepeatedField<int32_t>& layers, int block) {
  return std::find(layers.begin(), layers.end(), block) != layers.end();
}

}  // namespace

struct T5Model::Block {
  std::unique_ptr<AttentionSublayer> self_attention, cross_attention;
  AttentionSublayer::Saved self_saved, cross_saved;
  std::unique_ptr<FeedForward> feed_forward;
};

struct T5Model::Stack {
  bool decoder = false;
  std::vector<Block> blocks;
  Weight relative_bias, final_norm;
  // This stack's token routing, computed once per step and shared by its MoWE layers: in one
  // process, or across ranks.
  bool has_mowe = false;  // routing is computed only for stacks with MoWE layers
  Dispatch dispatch;
  std::unique_ptr<ExchangeDispatch> exchange;
  RoutedTokens routed;  // with exchange, when the inputs bring no routing: routed here
  const TokenRouter& router() const {
    return exchange ? static_cast<const TokenRouter&>(*exchange) : dispatch;
  }
  // Per step.
  Tensor bias, dbias, final_in, final_rstd;
  int64_t real_tokens = 0, routed_tokens = 0;  // of the last routing
};

T5Model::T5Model(const config::ModelConfig& c, ParameterStore& store, const RoutingTable* routing,
                 const MoweParallel* parallel)
    : config_(c), routing_(routing), parallel_(parallel ? *parallel : MoweParallel{}) {
  const bool has_mowe = has_mowe_layers(c);
  MOWE_CHECK(!has_mowe || routing != nullptr,
             "model.mowe lists MoWE layers, but no routing table was given to the model");
  MOWE_CHECK(parallel_.plan == nullptr || (parallel_.alltoall != nullptr && routing != nullptr),
             "expert parallelism needs the plan's routing table and an all-to-all");
  std::vector<ExpertShard> shards;  // this rank's experts; empty: all of them
  if (parallel_.plan != nullptr && has_mowe) {
    const int rank = parallel_.alltoall->comm().rank();
    for (int b = 0; b < parallel_.plan->num_buckets(); ++b)
      shards.push_back(parallel_.plan->local_shard(rank, b));
  }
  const int64_t d = c.d_model(), v = c.vocab_size(), k = c.relative_attention_num_buckets();
  // T5.1.1: one input embedding for both stacks, and an untied output projection. T5X's
  // initialisers: the embedding N(0, 1); the output projection (a DenseGeneral) variance_scaling
  // (1.0, fan_in, truncated_normal).
  //
  // Registration order is the reverse of the order in which backward finishes the gradients
  // (build_grad_groups): the embedding and each stack's bias table and final norm (finished
  // last), the encoder's blocks, the decoder's, the output projection (finished first). The
  // dense gradients are laid out in this order (ParameterStore), so each allreduce bucket tiles
  // one range of memory and is reduced in place. Checkpoints address tensors by name.
  store.add("shared.embedding", {v, d}, ParamKind::Dense, {Init::Normal, 1.0});
  embedding_ = Weight::of(store, "shared.embedding");
  for (const std::string name : {"encoder", "decoder"}) {
    // T5X: variance_scaling(1.0, fan_avg, uniform) over its [heads, buckets] table (ours is the
    // transpose; fan_avg is symmetric): uniform with variance 2 / (H + K).
    store.add(name + ".relative_attention_bias", {k, c.num_heads()}, ParamKind::Dense,
              {Init::Uniform, std::sqrt(2.0 / double(k + c.num_heads()))});
    store.add(name + ".final_norm", {d}, ParamKind::Dense, {Init::Ones});
  }
  for (bool decoder : {false, true}) {
    auto stack = std::make_unique<Stack>();
    stack->decoder = decoder;
    stack->has_mowe = !stack_mowe_layers(c.mowe(), decoder).empty();
    if (parallel_.plan != nullptr && stack->has_mowe)
      stack->exchange = std::make_unique<ExchangeDispatch>(*parallel_.plan, *parallel_.alltoall,
                                                           parallel_.control);
    const std::string name = decoder ? "decoder" : "encoder";
    stack->relative_bias = Weight::of(store, name + ".relative_attention_bias");
    stack->final_norm = Weight::of(store, name + ".final_norm");
    const int layers = decoder ? c.num_decoder_layers() : c.num_encoder_layers();
    for (int i = 0; i < layers; ++i) {
      const std::string prefix = fmt::format("{}.block{}", name, i);
      Block b;
      AttentionSpec spec{d, c.num_heads(), c.d_kv(), decoder, c.layer_norm_epsilon()};
      b.self_attention =
          std::make_unique<AttentionSublayer>(store, prefix + ".self_attention", spec);
      if (decoder) {
        spec.causal = false;
        b.cross_attention =
            std::make_unique<AttentionSublayer>(store, prefix + ".cross_attention", spec);
      }
      if (contains(stack_mowe_layers(c.mowe(), decoder), i)) {
        b.feed_forward =
            std::make_unique<MoweFeedForward>(store, prefix, c, *routing, stack->router(), shards);
      } else {
        b.feed_forward = std::make_unique<DenseFeedForward>(store, prefix + ".ffn", c);
      }
      stack->blocks.push_back(std::move(b));
    }
    (decoder ? decoder_ : encoder_) = std::move(stack);
  }
  store.add("decoder.lm_head", {d, v}, ParamKind::Dense,
            {Init::TruncatedNormal, 1.0 / std::sqrt(double(d))});
  lm_head_ = Weight::of(store, "decoder.lm_head");
  build_grad_groups(store);
}

void T5Model::build_grad_groups(ParameterStore& store) {
  std::vector<bool> taken(store.all().size(), false);
  auto group_of_prefix = [&](const std::string& prefix) {
    std::vector<Parameter*> group;
    for (size_t i = 0; i < store.all().size(); ++i) {
      Parameter& p = *store.all()[i];
      if (p.kind == ParamKind::Dense && p.name.rfind(prefix, 0) == 0) {
        group.push_back(&p);
        taken[i] = true;
      }
    }
    return group;
  };
  grad_groups_.push_back(group_of_prefix("decoder.lm_head"));  // final first: backward starts there
  for (const char* stack : {"decoder", "encoder"}) {
    const Stack& st = stack[0] == 'd' ? *decoder_ : *encoder_;
    for (size_t i = st.blocks.size(); i-- > 0;)
      grad_groups_.push_back(group_of_prefix(fmt::format("{}.block{}.", stack, i)));
  }
  std::vector<Parameter*> rest;
  for (size_t i = 0; i < store.all().size(); ++i)
    if (!taken[i] && store.all()[i]->kind == ParamKind::Dense) rest.push_back(store.all()[i].get());
  grad_groups_.push_back(rest);
}

T5Model::~T5Model() = default;

T5Model::RoutingLoad T5Model::routing_load() const {
  RoutingLoad load;
  routing_load(load);
  return load;
}

void T5Model::routing_load(RoutingLoad& load) const {
  load.tokens = load.routed = 0;
  load.bucket_rows.clear();
  for (const Stack* st : {encoder_.get(), decoder_.get()}) {
    if (routing_ == nullptr || !st->has_mowe) continue;
    load.tokens += st->real_tokens;
    load.routed += st->routed_tokens;
    // The routing is shared by the stack's MoWE layers, and each of them computes every row.
    int64_t layers = 0;
    for (const Block& b : st->blocks)
      layers += dynamic_cast<const MoweFeedForward*>(b.feed_forward.get()) != nullptr;
    const std::vector<int64_t>& rows = st->router().expert_rows().bucket_rows;
    if (load.bucket_rows.size() + 1 < rows.size()) load.bucket_rows.resize(rows.size() - 1);
    for (size_t b = 0; b + 1 < rows.size(); ++b)
      load.bucket_rows[b] += layers * (rows[b + 1] - rows[b]);
  }
}

std::vector<ExpertParameter> T5Model::expert_parameters() const {
  std::vector<ExpertParameter> out;
  for (const Stack* st : {encoder_.get(), decoder_.get()}) {
    for (const Block& b : st->blocks) {
      const auto* mowe = dynamic_cast<const MoweFeedForward*>(b.feed_forward.get());
      if (mowe == nullptr) continue;
      const ExpertBank& bank = mowe->experts();
      for (int k = 0; k < bank.num_buckets(); ++k) {
        std::vector<Parameter*> params = bank.inputs(k);
        params.push_back(&bank.output(k));
        for (Parameter* p : params) {
          const bool seen = std::any_of(out.begin(), out.end(),
                                        [&](const ExpertParameter& e) { return e.parameter == p; });
          if (!seen) out.push_back({p, k});
        }
      }
    }
  }
  return out;
}

Tensor T5Model::embed(const StepContext& s, const Tensor& ids, int64_t batch, uint64_t site) {
  Tensor x = s.activations->alloc({ids.numel(), config_.d_model()}, embedding_.value.dtype);
  s.backend->embedding_forward(s.ctx, embedding_.value, ids.reshape({ids.numel()}), x);
  dropout_examples_forward(s, x, batch, site);
  return x;
}

Tensor T5Model::run_stack(const StepContext& s, Stack& st, const Tensor& x_embedded,
                          const ModelInputs& in, const Tensor& memory) {
  const bool dec = st.decoder;
  const Tensor& valid = dec ? in.dec_valid : in.enc_valid;
  if (routing_ != nullptr && st.has_mowe) {
    const Tensor& ids = dec ? in.dec_routing : in.enc_routing;
    MOWE_CHECK(ids.device == Device::CPU && ids.dtype == DType::I32,
               "routing ids are dispatched on the host: expected host i32, got {}", ids.str());
    const std::span<const int32_t> span(ids.ptr<int32_t>(), static_cast<size_t>(ids.numel()));
    const int32_t deactivate = config_.mowe().deactivate_routing_ids_above();
    if (st.exchange) {
      const RoutedTokens* routed = nullptr;
      if (in.routed != nullptr) {
        routed = dec ? &in.routed->decoder : &in.routed->encoder;
      } else {
        route_tokens(*parallel_.plan, parallel_.alltoall->comm().rank(), span, deactivate,
                     &st.routed);
        routed = &st.routed;
      }
      st.exchange->assign(s.ctx, *routed);  // collective: counts and keys only
      st.exchange->upload(*s.activations);
    } else {
      st.dispatch.assign(*routing_, span, deactivate);
      st.dispatch.upload(*s.activations);
    }
    st.real_tokens =
        std::count_if(span.begin(), span.end(), [](int32_t id) { return id != kPaddingRoutingId; });
    st.routed_tokens = st.exchange ? st.exchange->rows_sent() : st.dispatch.num_routed();
  }
  const int64_t len = valid.dim(1), heads = config_.num_heads();
  st.bias = s.activations->alloc({heads, len, len}, x_embedded.dtype);
  s.backend->position_bias_forward(s.ctx, st.relative_bias.value, st.bias, !dec,
                                   config_.relative_attention_max_distance());
  Tensor x = x_embedded;
  for (size_t i = 0; i < st.blocks.size(); ++i) {
    Block& b = st.blocks[i];
    x = b.self_attention->forward(s, x, {}, st.bias, valid, in.batch,
                                  block_site(dec, i, kSelfAttention), &b.self_saved);
    if (dec)
      x = b.cross_attention->forward(s, x, memory, {}, in.enc_valid, in.batch,
                                     block_site(dec, i, kCrossAttention), &b.cross_saved);
    x = b.feed_forward->forward(s, x, in.batch, block_site(dec, i, kFeedForward));
  }
  st.final_in = x;
  Tensor out = norm_forward(s, st.final_norm, x, config_.layer_norm_epsilon(), &st.final_rstd);
  dropout_examples_forward(s, out, in.batch, final_site(dec));
  return out;
}

double T5Model::forward(const StepContext& s, const ModelInputs& in, double z_loss) {
  enc_out_ = run_stack(s, *encoder_, embed(s, in.enc_ids, in.batch, embed_site(false)), in, {});
  dec_out_ =
      run_stack(s, *decoder_, embed(s, in.dec_ids, in.batch, embed_site(true)), in, enc_out_);
  logits_ = linear_forward(s, dec_out_, lm_head_);
  const int64_t n = logits_.rows();
  Tensor losses = s.activations->alloc({n}, logits_.dtype);
  lse_ = s.activations->alloc({n}, logits_.dtype);
  s.backend->cross_entropy_forward(s.ctx, logits_, in.targets.reshape({n}), in.weights.reshape({n}),
                                   z_loss, losses, lse_);
  // Summed on the host in row order, the same bits on every device: on a device this is one
  // download of N numbers and the step's one synchronisation for the loss.
  std::vector<char> host(losses.device == Device::CPU ? 0 : losses.nbytes());
  if (losses.device != Device::CPU) download(host.data(), losses, s.ctx.stream);
  const void* l = losses.device == Device::CPU ? losses.data : host.data();
  double total = 0;
  for (int64_t i = 0; i < n; ++i)
    total += losses.dtype == DType::F32 ? static_cast<const float*>(l)[i]
                                        : static_cast<const double*>(l)[i];
  return total;
}

void T5Model::backprop_stack(const StepContext& s, Stack& st, const Tensor& dout,
                             const ModelInputs& in, const Tensor& memory, const Tensor& dmemory) {
  const bool dec = st.decoder;
  st.dbias = s.activations->alloc_zeros(st.bias.shape, st.bias.dtype);
  dropout_examples_backward(s, dout, in.batch, final_site(dec));
  Tensor dx = s.activations->alloc(st.final_in.shape, st.final_in.dtype);
  norm_backward(s, st.final_norm, dout, st.final_in, st.final_rstd, dx);
  for (size_t i = st.blocks.size(); i-- > 0;) {
    Block& b = st.blocks[i];
    b.feed_forward->backward(s, dx, in.batch, block_site(dec, i, kFeedForward));
    if (dec)
      b.cross_attention->backward(s, b.cross_saved, dx, memory, dmemory, {}, in.batch,
                                  block_site(dec, i, kCrossAttention));
    b.self_attention->backward(s, b.self_saved, dx, {}, {}, st.dbias, in.batch,
                               block_site(dec, i, kSelfAttention));
    // Block i's own dense parameters are final (see build_grad_groups for the numbering).
    // Group 0 is the output projection, then the decoder's blocks, then the encoder's.
    const size_t group =
        1 + (dec ? st.blocks.size() - 1 - i : decoder_->blocks.size() + st.blocks.size() - 1 - i);
    if (s.on_grads_ready) s.on_grads_ready(group);
  }
  s.backend->position_bias_backward(s.ctx, st.dbias, st.relative_bias.grad, !dec,
                                    config_.relative_attention_max_distance());
  dropout_examples_backward(s, dx, in.batch, embed_site(dec));
  const Tensor& ids = dec ? in.dec_ids : in.enc_ids;
  s.backend->embedding_backward(s.ctx, dx, ids.reshape({ids.numel()}), embedding_.grad);
}

void T5Model::backward(const StepContext& s, const ModelInputs& in, double z_loss,
                       double loss_scale) {
  const int64_t n = logits_.rows();
  Tensor dlogits = s.activations->alloc(logits_.shape, logits_.dtype);
  s.backend->cross_entropy_backward(s.ctx, logits_, in.targets.reshape({n}),
                                    in.weights.reshape({n}), z_loss, lse_, loss_scale, dlogits);
  Tensor ddec = s.activations->alloc_zeros(dec_out_.shape, dec_out_.dtype);
  matmul_backward(*s.backend, s.ctx, dlogits, dec_out_, lm_head_.value, ddec, lm_head_.grad, false,
                  false);
  if (s.on_grads_ready) s.on_grads_ready(0);  // the output projection, the largest tensor
  Tensor denc = s.activations->alloc_zeros(enc_out_.shape, enc_out_.dtype);
  backprop_stack(s, *decoder_, ddec, in, enc_out_, denc);
  backprop_stack(s, *encoder_, denc, in, {}, {});
  if (s.on_grads_ready) s.on_grads_ready(grad_groups_.size() - 1);
}

}  // namespace mowe::model
