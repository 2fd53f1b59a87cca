#include "model/t5_model.h"

#include <cmath>

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
  Tensor forward(const StepContext& s, const Tensor& x_in, const Tensor&, int64_t batch,
                 uint64_t site) override {
    return ffn_.forward(s, x_in, batch, site, &saved_);
  }
  void backward(const StepContext& s, const Tensor& dx, int64_t batch, uint64_t site) override {
    ffn_.backward(s, saved_, dx, batch, site);
  }

 private:
  FfnSublayer ffn_;
  FfnSublayer::Saved saved_;
};

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
  // Per step.
  Tensor bias, dbias, final_in, final_rstd;
};

T5Model::T5Model(const config::ModelConfig& c, ParameterStore& store) : config_(c) {
  const int64_t d = c.d_model(), v = c.vocab_size(), k = c.relative_attention_num_buckets();
  // T5.1.1: one input embedding for both stacks, and an untied output projection.
  store.add("shared.embedding", {v, d}, ParamKind::Dense, {Init::Normal, 1.0});
  store.add("decoder.lm_head", {d, v}, ParamKind::Dense,
            {Init::Normal, 1.0 / std::sqrt(double(d))});
  embedding_ = Weight::of(store, "shared.embedding");
  lm_head_ = Weight::of(store, "decoder.lm_head");
  for (bool decoder : {false, true}) {
    auto stack = std::make_unique<Stack>();
    stack->decoder = decoder;
    const std::string name = decoder ? "decoder" : "encoder";
    store.add(name + ".relative_attention_bias", {k, c.num_heads()}, ParamKind::Dense,
              {Init::Normal, 1.0 / std::sqrt(double(d))});
    store.add(name + ".final_norm", {d}, ParamKind::Dense, {Init::Ones});
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
      b.feed_forward = std::make_unique<DenseFeedForward>(store, prefix + ".ffn", c);
      stack->blocks.push_back(std::move(b));
    }
    (decoder ? decoder_ : encoder_) = std::move(stack);
  }
}

T5Model::~T5Model() = default;

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
  const Tensor& routing = dec ? in.dec_routing : in.enc_routing;
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
    x = b.feed_forward->forward(s, x, routing.reshape({routing.numel()}), in.batch,
                                block_site(dec, i, kFeedForward));
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
  MOWE_CHECK(losses.device == Device::CPU, "the loss sum is read on the host (CPU backend only)");
  double total = 0;
  for (int64_t i = 0; i < n; ++i)
    total += losses.dtype == DType::F32 ? losses.ptr<float>()[i] : losses.ptr<double>()[i];
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
  Tensor denc = s.activations->alloc_zeros(enc_out_.shape, enc_out_.dtype);
  backprop_stack(s, *decoder_, ddec, in, enc_out_, denc);
  backprop_stack(s, *encoder_, denc, in, {}, {});
}

}  // namespace mowe::model
