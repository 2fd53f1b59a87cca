// Routing tokenizer benchmark: tokens/s of RoutingTokenizer::route on one core, over the WordNet
// training split tokenized with the real default tokenizer, with the real routing vocabulary
// (both written by mowe_vocab), in rows of data.input_length tokens as the loader routes them.
//   build/bin/mowe_bench_routing_tokenizer [--config configs/wordnet_small.textproto] [--reps N]
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <iostream>

#include "data/pipeline.h"
#include "launch/train/config_rules.h"
#include "runtime/config/config.h"
#include "runtime/log.h"

namespace {

namespace data = mowe::data;
using Clock = std::chrono::steady_clock;

// Best-of-reps throughput of routing the stream in rows of `row` tokens.
double tokens_per_second(const data::RoutingTokenizer& table, const std::vector<int32_t>& tokens,
                         int64_t row, int reps, uint64_t* checksum) {
  std::vector<int32_t> ids(tokens.size());
  double best = 0;
  for (int r = 0; r < reps; ++r) {
    auto t0 = Clock::now();
    for (size_t start = 0; start < tokens.size(); start += row) {
      const int64_t n = std::min<int64_t>(row, static_cast<int64_t>(tokens.size() - start));
      table.route(tokens.data() + start, n, ids.data() + start);
    }
    double s = std::chrono::duration<double>(Clock::now() - t0).count();
    best = std::max(best, static_cast<double>(tokens.size()) / s);
  }
  *checksum = 0;
  for (int32_t id : ids) *checksum += static_cast<uint32_t>(id);
  return best;
}

int run(int argc, char** argv) {
  auto flags = mowe::config::parse_common_flags(argc, argv, {}, {"--reps"});
  if (flags.help) {
    std::cout << mowe::config::help_text("mowe_bench_routing_tokenizer",
                                         "[--config FILE] [--reps N] [--set k=v]...\n");
    return 0;
  }
  mowe::log::init({.level = flags.log_level});
  const std::string path =
      flags.config_path.empty() ? "configs/wordnet_small.textproto" : flags.config_path;
  const auto config = mowe::train::load_config(path, flags.overrides);
  const int reps = flags.values.count("--reps") ? std::stoi(flags.values.at("--reps")) : 5;
  const auto& d = config.data();
  data::Tokenizer tokenizer = data::load_tokenizer(d);
  data::RoutingVocab vocab = data::RoutingVocab::load(d.routing_vocab(), tokenizer);
  data::Split split = data::read_split(d);
  data::TokenizedCorpus corpus = data::tokenize_documents(split.train, tokenizer);
  data::TokenStream stream(corpus, data::Tokenizer::kEosId, static_cast<uint64_t>(d.seed()));

  fmt::print(
      "# routing tokenizer: {} tokens of the {} training split, rows of {}, one core, "
      "best of {}\n",
      stream.size(), d.corpus() == mowe::config::DataConfig::WORDNET ? "WordNet" : "corpus",
      d.input_length(), reps);
  fmt::print("{:>14} {:>9} {:>9} {:>7} {:>8} {:>13} {:>10}\n", "case variants", "keys", "slots",
             "load", "MiB", "tokens/s", "aux share");
  for (bool variants : {true, false}) {
    data::RoutingTokenizer table = vocab.table(variants);
    uint64_t checksum = 0;
    double rate = tokens_per_second(table, stream.tokens(), d.input_length(), reps, &checksum);
    std::vector<int32_t> ids(stream.size());
    table.route(stream.tokens(), ids);
    int64_t aux = std::count_if(ids.begin(), ids.end(),
                                [&](int32_t id) { return id >= tokenizer.vocab_size(); });
    fmt::print("{:>14} {:>9} {:>9} {:>7.3f} {:>8.1f} {:>13.3e} {:>9.1f}%\n",
               variants ? "on" : "off", table.num_keys(), table.capacity(), table.load_factor(),
               table.bytes() / 1048576.0, rate, 100.0 * aux / std::max<int64_t>(1, ids.size()));
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    std::cerr << "mowe_bench_routing_tokenizer: error: " << e.what()
              << "\n(run build/bin/mowe_vocab --config <the same config> first)\n";
    return 2;
  }
}
