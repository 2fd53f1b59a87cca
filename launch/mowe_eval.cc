// mowe_eval: what a checkpoint knows. Restores the parameters of a checkpoint (no optimizer
// state) and reports, on rank 0:
//   - the validation loss and perplexity over the held-out split;
//   - greedy decoding of span-corruption targets of held-out examples (token accuracy, and a few
//     examples printed);
//   - the closed-book knowledge probe: WordNet documents seen in pre-training with the head of
//     their gloss masked as a sentinel span; the model must write the hidden words (exact match
//     and token F1);
//   - with --deactivate-routing-ids-above N, all of it with the experts of routing ids above N
//     switched off (the auxiliary words' experts when N is the default vocabulary's size).
//   mpirun -np N build/bin/mowe_eval --config C --checkpoint DIR [--batches N] [--decode N]
//                                    [--probe N] [--deactivate-routing-ids-above N] [--json F]
// Runs in the frame of launch/program/program.h, with the same start-up checks as mowe_pretrain.
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <iostream>
#include <string>

#include "data/routing_vocab.h"
#include "launch/program/program.h"
#include "launch/train/checkpoint.h"
#include "launch/train/decode.h"
#include "launch/train/job.h"
#include "launch/train/step.h"
#include "runtime/config/config.h"
#include "runtime/files.h"
#include "launch/train/config_rules.h"

namespace {

constexpr const char* kUsage =
    "mpirun -np N mowe_eval --config FILE --checkpoint DIR [--set path=value]...\n"
    "                       [--batches N] [--decode N] [--probe N]\n"
    "                       [--deactivate-routing-ids-above N | --deactivate-auxiliary]\n"
    "                       [--json FILE]\n"
    "  --checkpoint  a step-NNNNNNNN directory written by mowe_pretrain (parameters are read)\n"
    "  --batches     held-out global batches for the validation loss (default\n"
    "                training.eval_batches; 0: skip)\n"
    "  --decode      held-out examples whose span-corruption targets are decoded greedily\n"
    "                (default 32; 0: skip)\n"
    "  --probe       knowledge-probe questions from WordNet synsets seen in pre-training\n"
    "                (default 500; 0: skip; needs data.corpus WORDNET)\n"
    "  --deactivate-routing-ids-above N  switch off the experts of routing ids > N\n"
    "                (model.mowe.deactivate_routing_ids_above)\n"
    "  --deactivate-auxiliary  the same above the default vocabulary: every auxiliary word's\n"
    "                expert off, the paper's ablation (Table 3)\n"
    "  --json        also write the results as one JSON object to FILE";

using mowe::Error;

// The program's own flags, read by load.
struct Options {
  std::string checkpoint;
  int64_t batches = 0, decode = 32, probe = 500;
};

mowe::config::Config load(const mowe::config::CommonFlags& flags, Options& o) {
  const auto& v = flags.values;
  if (!v.count("--checkpoint"))
    throw Error("--checkpoint DIR is required: a step-NNNNNNNN directory of a training run");
  o.checkpoint = v.at("--checkpoint");
  if (!std::filesystem::exists(std::filesystem::path(o.checkpoint) / "manifest.pb"))
    throw Error(
        fmt::format("--checkpoint {}: not a checkpoint directory (no manifest.pb)", o.checkpoint));
  std::vector<std::string> overrides = flags.overrides;
  if (v.count("--deactivate-routing-ids-above")) {
    const int64_t above = mowe::config::parse_int_flag(v.at("--deactivate-routing-ids-above"),
                                                       "--deactivate-routing-ids-above", 1);
    overrides.push_back(fmt::format("model.mowe.deactivate_routing_ids_above={}", above));
  }
  if (flags.has("--deactivate-auxiliary")) {
    if (v.count("--deactivate-routing-ids-above"))
      throw Error("--deactivate-auxiliary and --deactivate-routing-ids-above: give one of them");
    // Routing ids below the default vocabulary's size are its pieces; the auxiliary words
    // (whole words of the knowledge-rich vocabulary) come after them.
    const auto plain = mowe::train::load_config(flags.config_path, overrides);
    const auto vocab = mowe::data::RoutingVocab::load(plain.data().routing_vocab());
    overrides.push_back(
        fmt::format("model.mowe.deactivate_routing_ids_above={}", vocab.default_vocab_size() - 1));
  }
  mowe::config::Config config = mowe::train::load_config(flags.config_path, overrides);
  o.batches = config.training().eval_batches();
  if (v.count("--batches"))
    o.batches = mowe::config::parse_int_flag(v.at("--batches"), "--batches", 0);
  if (v.count("--decode")) o.decode = mowe::config::parse_int_flag(v.at("--decode"), "--decode", 0);
  if (v.count("--probe")) o.probe = mowe::config::parse_int_flag(v.at("--probe"), "--probe", 0);
  if (o.probe > 0 && config.data().corpus() != mowe::config::DataConfig::WORDNET)
    throw Error(
        "--probe needs data.corpus: WORDNET (its questions are WordNet glosses); pass "
        "--probe 0 for another corpus");
  return config;
}

std::string json_number(double x) {
  return std::isfinite(x) ? fmt::format("{:.6g}", x) : "null";
}

int run(const mowe::program::Setup& s, const Options& o) {
  const int rank = s.rank;
  mowe::train::Job job(s.config, s.comm);
  const int64_t step = mowe::train::load_parameters(job, o.checkpoint);
  mowe::train::StepRunner runner(job);
  const int deactivated = s.config.model().mowe().deactivate_routing_ids_above();
  std::string json = fmt::format("{{\"checkpoint\":\"{}\",\"step\":{},\"deactivate_above\":{}",
                                 o.checkpoint, step, deactivated);
  if (rank == 0)
    spdlog::info("[eval] checkpoint {} (step {}){}", o.checkpoint, step,
                 deactivated > 0
                     ? fmt::format(", experts of routing ids > {} deactivated", deactivated)
                     : "");

  if (o.batches > 0) {
    const double loss = mowe::train::evaluate(runner, job, o.batches);
    if (rank == 0)
      spdlog::info("[eval] validation loss {:.4f}, perplexity {:.2f} ({} global batches)", loss,
                   std::exp(loss), o.batches);
    json += fmt::format(",\"validation_loss\":{},\"perplexity\":{}", json_number(loss),
                        json_number(std::exp(loss)));
  }

  const mowe::data::Tokenizer& tok = *job.data().tokenizer;
  // Decoding batches: the loader's per-rank batch (the held-out one only when it is needed:
  // without a validation split the probe still runs).
  const int batch = static_cast<int>(std::max<int64_t>(
      1, (o.decode > 0 ? job.eval_loader() : job.train_loader()).local_batch_size()));
  if (o.decode > 0) {
    // Held-out span-corruption examples: decode the whole target from the start token.
    std::vector<mowe::train::DecodeRequest> requests;
    std::vector<std::vector<int32_t>> truths;
    for (int64_t i = 0; i < o.decode; ++i) {
      const mowe::data::Example ex = job.eval_loader().example(i);
      requests.push_back({ex.inputs, {}});
      truths.emplace_back(ex.targets.begin(), ex.targets.end() - 1);  // without EOS
    }
    const int max_tokens = static_cast<int>(job.eval_loader().target_length());
    const auto decoded =
        mowe::train::greedy_decode(runner, job, requests, max_tokens, false, batch);
    int64_t right = 0, total = 0, exact = 0;
    double text_exact = 0, text_f1 = 0;  // as answers: the words of the decoded text
    for (size_t i = 0; i < decoded.size(); ++i) {
      for (size_t t = 0; t < truths[i].size(); ++t, ++total)
        right += t < decoded[i].size() && decoded[i][t] == truths[i][t];
      exact += decoded[i] == truths[i];
      const auto s = mowe::train::score_answer(tok.decode(decoded[i]), tok.decode(truths[i]));
      text_exact += s.exact;
      text_f1 += s.f1;
    }
    const double accuracy = total ? double(right) / total : 0;
    const double count = std::max<double>(1, decoded.size());
    if (rank == 0) {
      spdlog::info(
          "[eval] greedy decoding of {} held-out targets: token accuracy {:.1f}%, {} exact; as "
          "answers: exact match {:.1f}%, token F1 {:.1f}%",
          decoded.size(), 100 * accuracy, exact, 100 * text_exact / count, 100 * text_f1 / count);
      for (size_t i = 0; i < decoded.size() && i < 3; ++i)
        spdlog::info("[eval]   target '{}' -> '{}'", tok.decode(truths[i]), tok.decode(decoded[i]));
    }
    json += fmt::format(
        ",\"decode_examples\":{},\"decode_token_accuracy\":{},\"decode_exact_match\":{},"
        "\"decode_f1\":{}",
        decoded.size(), json_number(accuracy), json_number(text_exact / count),
        json_number(text_f1 / count));
  }

  if (o.probe > 0) {
    const auto items = mowe::train::wordnet_probe(s.config, tok, o.probe, 0x9e3779b97f4a7c15ULL);
    std::vector<mowe::train::DecodeRequest> requests;
    for (const auto& it : items) requests.push_back(it.request);
    const auto decoded = mowe::train::greedy_decode(runner, job, requests, 12, true, batch);
    double exact = 0, f1 = 0;
    for (size_t i = 0; i < items.size(); ++i) {
      const auto s = mowe::train::score_answer(tok.decode(decoded[i]), items[i].answer);
      exact += s.exact;
      f1 += s.f1;
    }
    const double n = std::max<double>(1, items.size());
    if (rank == 0) {
      spdlog::info(
          "[eval] knowledge probe ({} WordNet synsets seen in pre-training): exact match "
          "{:.1f}%, token F1 {:.1f}%",
          items.size(), 100 * exact / n, 100 * f1 / n);
      for (size_t i = 0; i < items.size() && i < 3; ++i)
        spdlog::info("[eval]   '{}': '{}' -> '{}'", items[i].masked, items[i].answer,
                     tok.decode(decoded[i]));
    }
    json += fmt::format(",\"probe_items\":{},\"probe_exact_match\":{},\"probe_f1\":{}",
                        items.size(), json_number(exact / n), json_number(f1 / n));
  }
  json += "}\n";
  if (rank == 0) {
    std::cout << json;
    if (s.flags.values.count("--json"))
      mowe::write_file_atomically(s.flags.values.at("--json"), json);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Options options;
  return mowe::program::run_program(
      argc, argv,
      {.name = "mowe_eval",
       .tag = "eval",
       .usage = kUsage,
       .bool_flags = {"--deactivate-auxiliary"},
       .value_flags = {"--checkpoint", "--batches", "--decode", "--probe",
                       "--deactivate-routing-ids-above", "--json"},
       .on_start = nullptr,  // no stop signals to catch: an evaluation has nothing to save
       .load = [&](const mowe::config::CommonFlags& flags) { return load(flags, options); },
       .run = [&](const mowe::program::Setup& setup) { return run(setup, options); }});
}
