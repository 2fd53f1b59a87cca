#include "launch/convert/names.h"

#include <fmt/format.h>

#include <cstdlib>
#include <optional>
#include <string_view>

namespace mowe::convert {
namespace {

bool starts_with(std::string_view s, std::string_view p) {
  return s.substr(0, p.size()) == p;
}

// "encoder.block3.self_attention.q" -> {stack "encoder", block 3, rest "self_attention.q"}.
struct BlockName {
  std::string stack;
  int block = 0;
  std::string rest;
};

std::optional<BlockName> split_block(std::string_view name) {
  for (std::string_view stack : {"encoder", "decoder"}) {
    const std::string prefix = std::string(stack) + ".block";
    if (!starts_with(name, prefix)) continue;
    std::string_view tail = name.substr(prefix.size());
    size_t digits = 0;
    while (digits < tail.size() && tail[digits] >= '0' && tail[digits] <= '9') ++digits;
    if (digits == 0 || digits > 6 || digits >= tail.size() || tail[digits] != '.') return {};
    if (digits > 1 && tail[0] == '0') return {};  // "block01" is not the trainer's
    return BlockName{std::string(stack), std::atoi(std::string(tail.substr(0, digits)).c_str()),
                     std::string(tail.substr(digits + 1))};
  }
  return {};
}

std::optional<ExportName> parameter_name(const std::string& name) {
  if (name == "shared.embedding") return ExportName{"shared.weight", false};  // [V, C] both
  if (name == "decoder.lm_head") return ExportName{"lm_head.weight", true};   // [C, V] -> [V, C]
  for (const char* stack : {"encoder", "decoder"}) {
    const std::string s = stack;
    // One position-bias table per stack; Hugging Face keeps it in block 0's self-attention.
    if (name == s + ".relative_attention_bias")
      return ExportName{s + ".block.0.layer.0.SelfAttention.relative_attention_bias.weight", false};
    if (name == s + ".final_norm") return ExportName{s + ".final_layer_norm.weight", false};
  }
  const std::optional<BlockName> b = split_block(name);
  if (!b) return {};
  const bool decoder = b->stack == "decoder";
  const std::string block = fmt::format("{}.block.{}.layer.", b->stack, b->block);
  // Sub-layer index inside T5Block.layer: self-attention 0, cross-attention 1 (decoder), the
  // feed-forward last.
  const int ff = decoder ? 2 : 1;
  for (const auto& [ours, theirs, index] :
       {std::tuple<std::string, std::string, int>{"self_attention", "SelfAttention", 0},
        {"cross_attention", "EncDecAttention", 1}}) {
    if (index == 1 && !decoder) continue;
    if (b->rest == ours + ".norm")
      return ExportName{fmt::format("{}{}.layer_norm.weight", block, index), false};
    for (const char* m : {"q", "k", "v", "o"})
      if (b->rest == ours + "." + m)  // [C, H*D] (o: [H*D, C]) -> nn.Linear [out, in]
        return ExportName{fmt::format("{}{}.{}.{}.weight", block, index, theirs, m), true};
  }
  if (b->rest == "ffn.norm" || b->rest == "mowe.norm")  // the pre-norm of the FFN sub-layer
    return ExportName{fmt::format("{}{}.layer_norm.weight", block, ff), false};
  for (const char* m : {"wi_0", "wi_1", "wo"})
    if (b->rest == std::string("ffn.") + m)
      return ExportName{fmt::format("{}{}.DenseReluDense.{}.weight", block, ff, m), true};
  return {};  // the experts of an unshared MoWE layer ("<block>.mowe.bucket0.wi"): our names
}

}  // namespace

ExportName export_name(const std::string& checkpoint_name) {
  const size_t slash = checkpoint_name.find('/');
  // Optimizer state keeps the trainer's name and layout: Adafactor's factored rows and columns
  // would swap meaning under a transposition, and nothing outside the trainer reads them.
  if (slash != std::string::npos) return {kOptimizerPrefix + checkpoint_name, false};
  if (auto e = parameter_name(checkpoint_name)) return *e;
  return {checkpoint_name, false};
}

std::string optimizer_slot(const std::string& checkpoint_name) {
  const size_t slash = checkpoint_name.rfind('/');
  return slash == std::string::npos ? "" : checkpoint_name.substr(slash + 1);
}

std::string component(const std::string& checkpoint_name) {
  const std::string p = checkpoint_name.substr(0, checkpoint_name.find('/'));
  if (p == "shared.embedding") return "embedding";
  if (p == "decoder.lm_head") return "lm_head";
  const size_t bucket = p.find("mowe.bucket");
  if (bucket != std::string::npos) {
    const size_t digits = bucket + 11;
    size_t end = digits;
    while (end < p.size() && p[end] >= '0' && p[end] <= '9') ++end;
    if (end > digits) return "experts bucket " + p.substr(digits, end - digits);
  }
  if (starts_with(p, "encoder.")) return "encoder";
  if (starts_with(p, "decoder.")) return "decoder";
  return "other";
}

}  // namespace mowe::convert
