// mowe_convert: checkpoint tools (docs/checkpoints.md). One process, streaming: no command holds
// the model in memory, only one tensor (a transposed matrix) or a batch of expert blocks.
//
//   build/bin/mowe_convert inspect runs/x/checkpoints/step-00001000 [--config]
//   build/bin/mowe_convert verify runs/x/checkpoints/step-00001000
//   build/bin/mowe_convert dump runs/x/checkpoints/step-00001000 decoder.lm_head [--limit 10]
//   build/bin/mowe_convert export CKPT --format safetensors --out model.safetensors
//   build/bin/mowe_convert export CKPT --format safetensors --out hf/ --shard-size 2000000000
//   build/bin/mowe_convert import hf/model.safetensors.index.json --out runs/y/step-00001000
#include <iostream>
#include <string_view>
#include <vector>

#include "launch/convert/checkpoint_tools.h"
#include "launch/convert/safetensors_io.h"
#include "runtime/check.h"
#include "runtime/config/config.h"
#include "runtime/log.h"

namespace {

using mowe::Error;
namespace convert = mowe::convert;

const char* kUsage = R"(<command> ...
       mowe_convert inspect CKPT_DIR [--config]
       mowe_convert verify CKPT_DIR [--max-problems N]
       mowe_convert dump CKPT_DIR TENSOR [--limit N]
       mowe_convert export CKPT_DIR --format safetensors --out OUT [--shard-size BYTES]
                    [--weights-only] [--no-routing-table] [--set data.routing_vocab=PATH]
       mowe_convert import SAFETENSORS_OR_INDEX --out CKPT_DIR

Tools for checkpoint directories (a step-NNNNNNNN directory that mowe_pretrain wrote).
  inspect   Step, versions, fingerprints, training state, a config summary, parameter counts
            per component, optimizer state and every tensor. --config prints only the resolved
            config, as text that --config FILE reads.
  verify    Checks every chunk's CRC32C, every file's size and every rank file; prints
            "OK: N tensors, B bytes verified" (exit 0) or every problem, one line each naming
            the file, tensor and byte offsets (exit 1; --max-problems lines, default 20).
  dump      One tensor's values, one per line, exactly (9 significant digits for f32).
  export    To safetensors: OUT ending in .safetensors is one file; otherwise OUT is a directory
            receiving model.safetensors, or with --shard-size the shards
            model-00001-of-0000N.safetensors and model.safetensors.index.json. Dense T5.1.1
            tensors get Hugging Face T5ForConditionalGeneration names and layouts, experts and the
            routing table our names, optimizer state the prefix optimizer/ (--weights-only leaves
            it out). The routing table is rebuilt from the routing vocabulary in the checkpoint's
            config (--set data.routing_vocab=PATH when it moved; --no-routing-table skips it).
  import    Back into a new checkpoint directory CKPT_DIR that mowe_pretrain --resume CKPT_DIR
            continues from (name it <checkpoint_dir>/step-NNNNNNNN for --resume auto).
)";

std::string positional(const mowe::config::CommonFlags& flags, size_t i, const char* what) {
  if (flags.positional.size() <= i)
    throw Error(fmt::format("mowe_convert {} needs {} (see --help)", flags.positional[0], what));
  return flags.positional[i];
}

void no_more_positionals(const mowe::config::CommonFlags& flags, size_t n) {
  if (flags.positional.size() > n)
    throw Error(fmt::format("unexpected argument '{}' (run with --help)", flags.positional[n]));
}

int run(int argc, char** argv) {
  // "--config" is inspect's switch here, never a config path (the config comes from the
  // checkpoint): taken out before parse_common_flags, which would want a path after it.
  bool print_config = false;
  std::vector<char*> args;
  for (int i = 0; i < argc; ++i) {
    if (i > 0 && std::string_view(argv[i]) == "--config") {
      print_config = true;
      continue;
    }
    if (std::string_view(argv[i]).rfind("--config=", 0) == 0)
      throw Error("--config takes no value: it makes inspect print the checkpoint's config");
    args.push_back(argv[i]);
  }
  auto flags = mowe::config::parse_common_flags(
      static_cast<int>(args.size()), args.data(), {"--weights-only", "--no-routing-table"},
      {"--format", "--out", "--shard-size", "--limit", "--max-problems"});
  if (flags.help) {
    std::cout << mowe::config::help_text("mowe_convert", kUsage);
    return 0;
  }
  mowe::log::init({.all_ranks = flags.log_all_ranks, .level = flags.log_level});
  if (flags.positional.empty()) throw Error("mowe_convert needs a command (see --help)");
  const std::string& command = flags.positional[0];
  if (print_config && command != "inspect")
    throw Error("--config is only for inspect (the config comes from the checkpoint)");

  if (command == "inspect") {
    const std::string dir = positional(flags, 1, "a checkpoint directory");
    no_more_positionals(flags, 2);
    const convert::ManifestView view = convert::read_manifest(dir);
    if (print_config) {
      std::cout << view.manifest.config();
      return 0;
    }
    convert::inspect(view, std::cout);
    return 0;
  }
  if (command == "verify") {
    const std::string dir = positional(flags, 1, "a checkpoint directory");
    no_more_positionals(flags, 2);
    int64_t max_problems = 20;
    if (flags.values.count("--max-problems"))
      max_problems =
          mowe::config::parse_int_flag(flags.values.at("--max-problems"), "--max-problems", 1);
    const convert::VerifyReport r = convert::verify(dir, static_cast<size_t>(max_problems));
    if (r.num_problems == 0) {
      std::cout << fmt::format("OK: {} tensors, {} bytes verified in {}\n", r.tensors, r.bytes,
                               dir);
      return 0;
    }
    for (const std::string& p : r.problems) std::cout << "FAIL: " << p << "\n";
    if (r.num_problems > static_cast<int64_t>(r.problems.size()))
      std::cout << fmt::format("... and {} more problems (--max-problems N lists more)\n",
                               r.num_problems - static_cast<int64_t>(r.problems.size()));
    std::cout << fmt::format("{}: {} problem{}; {} tensors ({} bytes) intact\n", dir,
                             r.num_problems, r.num_problems == 1 ? "" : "s", r.tensors, r.bytes);
    return 1;
  }
  if (command == "dump") {
    const std::string dir = positional(flags, 1, "a checkpoint directory");
    const std::string tensor = positional(flags, 2, "a tensor name");
    no_more_positionals(flags, 3);
    int64_t limit = -1;
    if (flags.values.count("--limit"))
      limit = mowe::config::parse_int_flag(flags.values.at("--limit"), "--limit", 0);
    convert::dump(dir, tensor, limit, std::cout);
    return 0;
  }
  if (command == "export") {
    const std::string dir = positional(flags, 1, "a checkpoint directory");
    no_more_positionals(flags, 2);
    const std::string format = flags.values.count("--format") ? flags.values.at("--format") : "";
    if (format != "safetensors")
      throw Error(
          fmt::format("--format {}: the one export format is safetensors "
                      "(--format safetensors)",
                      format.empty() ? "is missing" : "'" + format + "' is unknown"));
    convert::ExportOptions options;
    if (!flags.values.count("--out"))
      throw Error("export needs --out PATH (a .safetensors file or a directory)");
    options.out = flags.values.at("--out");
    if (flags.values.count("--shard-size"))
      options.shard_size = static_cast<uint64_t>(
          mowe::config::parse_int_flag(flags.values.at("--shard-size"), "--shard-size", 1));
    options.weights_only = flags.has("--weights-only");
    options.routing_table = !flags.has("--no-routing-table");
    options.overrides = flags.overrides;
    const convert::ExportResult r = convert::export_safetensors(dir, options);
    const size_t shards = options.shard_size > 0 ? r.files.size() - 1 : r.files.size();
    std::cout << fmt::format("exported {} tensors ({} bytes) of {} to {}{}:\n", r.tensors, r.bytes,
                             dir, shards == 1 ? "1 file" : fmt::format("{} shards", shards),
                             options.shard_size > 0 ? " and their index" : "");
    for (const std::string& f : r.files) std::cout << "  " << f << "\n";
    return 0;
  }
  if (command == "import") {
    const std::string input = positional(flags, 1, "a .safetensors file or an index .json");
    no_more_positionals(flags, 2);
    if (!flags.values.count("--out")) throw Error("import needs --out CHECKPOINT_DIR");
    const convert::ImportResult r = convert::import_safetensors(input, flags.values.at("--out"));
    std::cout << fmt::format(
        "imported {} tensors ({} bytes) of step {} into {}: mowe_pretrain --resume {} continues "
        "from it\n",
        r.tensors, r.bytes, r.step, r.dir, r.dir);
    return 0;
  }
  throw Error(
      fmt::format("unknown command '{}': inspect, verify, dump, export or import "
                  "(see --help)",
                  command));
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    std::cerr << "mowe_convert: error: " << e.what() << "\n";
    return 2;
  }
}
