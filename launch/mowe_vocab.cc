// mowe_vocab: builds the default tokenizer and the routing vocabulary for a config.
//
//   build/bin/mowe_vocab --config configs/wordnet_small.textproto [--retrain] [--set k=v]...
//   build/bin/mowe_vocab --config C --add-sentinels OUT   # a user's model given <extra_id_k>
//
// Reads the corpus (data.corpus), splits it, trains SentencePiece on the training split unless
// data.tokenizer_model exists (--retrain forces it), builds the routing vocabulary from the
// word list data.routing_word_list (or the WordNet lemma names) ordered by corpus frequency,
// counts the frequency of every routing id in the raw training documents, writes
// data.routing_vocab and prints a report on stdout.
// For data.corpus SYNTHETIC it writes only data.routing_vocab: the synthetic vocabulary needs
// no model, and the frequencies are the routing Zipf law's expected counts.
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <iostream>

#include "data/corpus.h"
#include "data/pipeline.h"
#include "data/routing_vocab.h"
#include "data/synthetic.h"
#include "launch/train/config_rules.h"
#include "runtime/check.h"
#include "runtime/config/config.h"
#include "runtime/files.h"
#include "runtime/log.h"

namespace {

namespace data = mowe::data;
using Clock = std::chrono::steady_clock;

const char* kUsage = R"(--config PATH [--set FIELD=VALUE ...] [--retrain] [--max-documents N]

Trains the SentencePiece model (data.tokenizer_model) on the training split if it does not exist,
then builds the routing vocabulary (data.routing_vocab) and prints its report. With
data.corpus SYNTHETIC: writes only data.routing_vocab, with the Zipf law's expected counts.
  --retrain            Train the SentencePiece model even if data.tokenizer_model exists.
  --max-documents N    TEXT and JSONL: train and count on a sample of N documents, the first
                       N / files of each corpus file (for corpora larger than memory; shards
                       are expected to be shuffled). Default: the whole corpus.
  --add-sentinels OUT  Write to OUT a copy of data.tokenizer_model (a SentencePiece model of
                       your own, e.g. T5's) with the sentinels <extra_id_0..> that
                       data.num_sentinels needs appended at the top of its vocabulary, as T5
                       does; prints the data.sp_vocab_size to set. Reads no corpus.
)";

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// The share of the counted tokens the most frequent ids, the unrouted ids and each bucket take.
void print_shares(const mowe::config::Config& config, const data::Tokenizer& tokenizer,
                  const data::RoutingVocab& vocab) {
  const auto& mowe = config.model().mowe();
  const std::vector<int64_t> freq = vocab.frequencies();
  const std::vector<int32_t> order = vocab.frequency_order();
  std::string top;
  for (int r = 0; r < 16 && r < static_cast<int>(order.size()); ++r)
    top += " " + (vocab.synthetic()                   ? fmt::format("#{}", order[r])
                  : order[r] < tokenizer.vocab_size() ? tokenizer.piece(order[r])
                                                      : vocab.word(order[r]));
  fmt::print("  top 16 ids         {:.1f}% of tokens:{}\n",
             100 * data::frequency_share(freq, order, 0, 16), top);
  int64_t first = mowe.num_unrouted_ids();
  fmt::print("  unrouted (top {})  {:.1f}% of tokens\n", first,
             100 * data::frequency_share(freq, order, 0, first));
  for (int b = 0; b < mowe.buckets_size(); ++b) {
    int64_t n = mowe.buckets(b).num_routing_ids();
    int64_t end = n == 0 ? vocab.size() : std::min<int64_t>(first + n, vocab.size());
    fmt::print("  bucket {}           ranks {}..{} ({} ids): {:.1f}% of tokens\n", b, first,
               end - 1, end - first, 100 * data::frequency_share(freq, order, first, end - first));
    first = end;
  }
}

void print_report(const mowe::config::Config& config, const data::Tokenizer& tokenizer,
                  const data::RoutingVocab& vocab, double seconds) {
  const auto& f = vocab.file();
  const auto& s = f.stats();
  int64_t counted = 0;
  for (int64_t c : vocab.frequencies()) counted += c;
  fmt::print("routing vocabulary {}\n", config.data().routing_vocab());
  fmt::print("  tokenizer          {} ({} pieces, hash {})\n", tokenizer.source(),
             tokenizer.vocab_size(), data::format_hash(tokenizer.hash()));
  fmt::print("  routing ids        {} = {} pieces + {} auxiliary words\n", vocab.size(),
             vocab.default_vocab_size(), f.entries_size());
  if (f.word_list().empty()) {
    fmt::print("  candidate words    {} from the lemma names, {} occur in the training split\n",
               s.candidate_words(), s.occurring_words());
  } else {
    fmt::print(
        "  word list          {}: {} lines, {} entries ({} not UTF-8, {} malformed skipped), {} "
        "occur in the training split; {} kept entries do not\n",
        f.word_list(), s.list_lines(), s.candidate_words(), s.list_invalid_utf8(),
        s.list_malformed(), s.occurring_words(), s.entries_not_in_corpus());
  }
  fmt::print("  single-piece words {} (routed by their piece id)\n", s.single_piece_words());
  fmt::print(
      "  dropped            {} longer than 9 pieces, {} with <unk>, {} with a sentinel, {} "
      "duplicate, {} over model.mowe.routing_vocab_size\n",
      s.dropped_too_long(), s.dropped_unknown(), s.dropped_special(), s.dropped_duplicate(),
      s.dropped_over_limit());
  fmt::print("  case-variant keys  {} ({} skipped: taken or too long); in use: {}\n",
             f.variant_keys_size(), s.variant_keys_skipped(), f.case_variants() ? "yes" : "no");
  fmt::print(
      "  auxiliary ids      {:.1f}% of words ({:.1f}% without case variants), {:.1f}% of "
      "tokens ({:.1f}%), over {} words\n",
      100 * s.word_share_with_variants(), 100 * s.word_share_without_variants(),
      100 * s.token_share_with_variants(), 100 * s.token_share_without_variants(),
      s.corpus_words());
  fmt::print("  frequencies        {} routing tokens: {} (pad, EOS, sentinels unrouted)\n", counted,
             f.corpus());
  print_shares(config, tokenizer, vocab);
  fmt::print("  built in {:.1f} s\n", seconds);
}

// data.corpus SYNTHETIC: no tokenizer to train and no words, only the routing ids' Zipf law,
// whose expected counts are the frequencies (seconds for a million ids).
int write_synthetic(const mowe::config::Config& config, const mowe::config::CommonFlags& flags) {
  const auto& d = config.data();
  if (flags.has("--retrain"))
    throw mowe::Error(
        "--retrain does not apply to data.corpus SYNTHETIC: there is no SentencePiece model to "
        "train (the frequencies are the Zipf law's expected counts)");
  if (flags.values.count("--max-documents"))
    throw mowe::Error(
        "--max-documents does not apply to data.corpus SYNTHETIC: there are no documents to "
        "sample");
  const auto t0 = Clock::now();
  const data::Tokenizer tokenizer = data::synthetic_tokenizer(d);
  const data::RoutingVocab vocab = data::synthetic_routing_vocab(config, tokenizer);
  vocab.save(d.routing_vocab());
  spdlog::info("[vocab] wrote {}", d.routing_vocab());
  fmt::print("routing vocabulary {} (SYNTHETIC: for benchmarks and capacity planning only)\n",
             d.routing_vocab());
  fmt::print("  tokenizer          {} (hash {}, no file)\n", tokenizer.source(),
             data::format_hash(tokenizer.hash()));
  fmt::print("  routing ids        {}, drawn from a Zipf({}) law (rank 1 = id 0)\n", vocab.size(),
             d.synthetic_zipf_exponent());
  fmt::print("  frequencies        {}\n", vocab.file().corpus());
  print_shares(config, tokenizer, vocab);
  fmt::print("  built in {:.1f} s ({:.1f} MB)\n", seconds_since(t0),
             std::filesystem::file_size(d.routing_vocab()) / 1e6);
  return 0;
}

// --add-sentinels OUT: the user's model made usable for span corruption without retraining it;
// its own pieces keep their ids, so text encodes as before.
int write_with_sentinels(const mowe::config::Config& config, const std::string& out) {
  const auto& d = config.data();
  if (d.corpus() == mowe::config::DataConfig::SYNTHETIC)
    throw mowe::Error(
        "--add-sentinels does not apply to data.corpus SYNTHETIC: there is no SentencePiece model");
  if (d.tokenizer_model().empty())
    throw mowe::Error(
        "data.tokenizer_model is empty: set it to the SentencePiece model to copy "
        "(--set data.tokenizer_model=PATH)");
  if (std::filesystem::exists(out) && std::filesystem::equivalent(out, d.tokenizer_model()))
    throw mowe::Error(fmt::format(
        "--add-sentinels {} would overwrite data.tokenizer_model: give the copy another path",
        out));
  const data::Tokenizer original = data::Tokenizer::load(d.tokenizer_model());
  const int n = d.num_sentinels();
  const int missing = original.missing_sentinels(n);
  std::string model = original.with_sentinels(n);
  const data::Tokenizer copy = data::Tokenizer::from_model(model, out);
  mowe::write_file_atomically(out, model);
  fmt::print(
      "wrote {}: {} pieces = {} of {} + {} sentinels appended ({} asked by "
      "data.num_sentinels; <extra_id_0> is id {})\n",
      out, copy.vocab_size(), original.vocab_size(), d.tokenizer_model(), missing, n,
      copy.sentinel(0));
  fmt::print(
      "to use it: --set data.tokenizer_model={} --set data.sp_vocab_size={} "
      "(model.vocab_size >= {}), then run mowe_vocab again for the routing vocabulary\n",
      out, copy.vocab_size(), copy.vocab_size());
  return 0;
}

int run(int argc, char** argv) {
  auto flags = mowe::config::parse_common_flags(argc, argv, {"--retrain"},
                                                {"--add-sentinels", "--max-documents"});
  if (flags.help) {
    std::cout << mowe::config::help_text("mowe_vocab", kUsage);
    return 0;
  }
  mowe::log::init({.all_ranks = flags.log_all_ranks, .level = flags.log_level});
  if (!flags.positional.empty())
    throw mowe::Error("unexpected argument '" + flags.positional[0] + "' (run with --help)");
  if (flags.config_path.empty()) throw mowe::Error("--config FILE is required (see --help)");
  const auto config = mowe::train::load_config(flags.config_path, flags.overrides);
  const auto& d = config.data();
  if (flags.values.count("--add-sentinels"))
    return write_with_sentinels(config, flags.values.at("--add-sentinels"));
  // User errors first, before a minute of work.
  if (d.routing_vocab().empty())
    throw mowe::Error(
        "data.routing_vocab is empty: set where to write it (--set data.routing_vocab=PATH)");
  if (d.corpus() == mowe::config::DataConfig::SYNTHETIC) return write_synthetic(config, flags);
  if (!d.routing_word_list().empty() && !std::filesystem::is_regular_file(d.routing_word_list()))
    throw mowe::Error(fmt::format(
        "data.routing_word_list = \"{}\" is not a file: give a word list (one entry per line, "
        "optionally a TAB and a frequency; .gz and .zst allowed), or leave it empty for WordNet",
        d.routing_word_list()));
  if (d.tokenizer_model().empty())
    throw mowe::Error(
        "data.tokenizer_model is empty: set where to write it (--set data.tokenizer_model=PATH)");
  const auto t0 = Clock::now();

  int64_t max_documents = 0;
  if (flags.values.count("--max-documents")) {
    const std::string& v = flags.values.at("--max-documents");
    char* end = nullptr;
    max_documents = std::strtoll(v.c_str(), &end, 10);
    if (v.empty() || *end != '\0' || max_documents <= 0)
      throw mowe::Error(
          fmt::format("--max-documents {}: give a positive number of documents to sample", v));
  }
  data::Split split = data::read_split(d, max_documents);
  const bool reuse_tokenizer =
      !flags.has("--retrain") && std::filesystem::exists(d.tokenizer_model());
  data::Tokenizer tokenizer = data::train_or_load_tokenizer(d, split, flags.has("--retrain"));
  // A damaged model that still loads would be baked into the new vocabulary; the vocabulary this
  // run replaces recorded the pieces of the model it was built with, and can tell.
  if (reuse_tokenizer && std::filesystem::exists(d.routing_vocab())) {
    std::string damage;
    try {
      damage = data::RoutingVocab::load(d.routing_vocab()).tokenizer_damage(tokenizer);
    } catch (const mowe::Error&) {
      // An unreadable old vocabulary is about to be replaced: nothing to compare with.
    }
    if (!damage.empty()) throw mowe::Error(damage);
  }
  data::RoutingVocab vocab = data::build_routing_vocab(config, split, tokenizer);
  vocab.save(d.routing_vocab());
  spdlog::info("[vocab] wrote {}", d.routing_vocab());
  print_report(config, tokenizer, vocab, seconds_since(t0));
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    std::cerr << "mowe_vocab: error: " << e.what() << "\n";
    return 2;
  }
}
