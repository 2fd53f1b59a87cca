// How mowe_convert names the trainer's tensors in a safetensors export (docs/checkpoints.md,
// "Exporting to safetensors"): the dense T5.1.1 part under Hugging Face's
// T5ForConditionalGeneration names and layouts (nn.Linear weights [out_features, in_features], so
// our [in, out] matrices are transposed), the MoWE experts under the trainer's own names and
// layout, optimizer state under "optimizer/" in the trainer's layout. Pure functions of the name:
// no model is built.
#pragma once

#include <string>

namespace mowe::convert {

struct ExportName {
  std::string name;        // the tensor's name in the safetensors file
  bool transpose = false;  // a 2-D tensor stored transposed there ([a, b] -> [b, a])
};

// The export name of a checkpoint tensor (parameter or "<parameter>/<state>"). Names the mapping
// does not know (a parameter added later) keep their own name, untransposed.
ExportName export_name(const std::string& checkpoint_name);

// The part of the model a checkpoint tensor belongs to, for parameter counts: "embedding",
// "lm_head", "encoder", "decoder", "experts bucket <b>" (shared or per block), or "other".
// Optimizer state counts with its parameter's component.
std::string component(const std::string& checkpoint_name);

// "m" for "encoder.block0.ffn.wo/m"; empty for a parameter.
std::string optimizer_slot(const std::string& checkpoint_name);

// Prefix of optimizer state in an export: "optimizer/<parameter>/<state>".
inline constexpr char kOptimizerPrefix[] = "optimizer/";

}  // namespace mowe::convert
