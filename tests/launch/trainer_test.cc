// The training library at 1, 2 and 4 ranks, on the tiny config with WordNet data (the tiny_data
// fixture builds its tokenizer and routing vocabulary):
// - N ranks give the losses, gradient norms, parameters and optimizer state of one process;
// - 10 steps, a checkpoint, a new trainer and 10 more are bit-identical to 20 straight steps
//   (AdamW and Adafactor, dropout on);
// - a checkpoint written at N ranks reads back bit-exactly at 1 rank and the other way round;
// - another bucket layout or routing vocabulary, a flipped byte and a truncated manifest are
//   refused with messages naming the hashes, the tensor and the file; --resume auto skips a
//   damaged newest checkpoint.
#include <gtest/gtest.h>
#include <mpi.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>

#include "data/corpus.h"
#include "launch/train/batch.h"
#include "launch/train/checkpoint.h"
#include "launch/train/decode.h"
#include "launch/train/trainer.h"
#include "runtime/checkpoint/framed_file.h"
#include "runtime/checkpoint/proto/checkpoint.pb.h"
#include "runtime/config/config.h"
#include "runtime/optimizer.h"
#include "tests/util/expect_error.h"
#include "launch/train/config_rules.h"

namespace mowe::train {
namespace {

namespace fs = std::filesystem;

std::unique_ptr<comm::Communicator> communicator(MPI_Comm c) {
  return comm::make_communicator(c, Device::CPU, comm::CommOptions{.timeout_seconds = 120});
}

struct Env {
  std::unique_ptr<comm::Communicator> world = communicator(MPI_COMM_WORLD);
  std::unique_ptr<comm::Communicator> self = communicator(MPI_COMM_SELF);
  // A fresh directory per test, the same path on every rank.
  std::string dir;
  explicit Env(const std::string& test) {
    dir = fmt::format("{}/trainer_test.np{}/{}", MOWE_TEST_TMP, world->size(), test);
    if (world->rank() == 0) {
      fs::remove_all(dir);
      fs::create_directories(dir);
    }
    world->barrier();
  }
};

config::Config tiny(const std::string& checkpoint_dir, const char* optimizer) {
  const std::string data = MOWE_TEST_DATA;
  return train::load_config(
      std::string(MOWE_SOURCE_DIR) + "/configs/tiny.textproto",
      {"data.tokenizer_model=" + data + "/spm.model", "data.routing_vocab=" + data + "/vocab.pb",
       "training.checkpoint_dir=" + checkpoint_dir, "training.optimizer=" + std::string(optimizer),
       "model.dropout_rate=0.1", "training.learning_rate=1e-2", "parallel.grad_bucket_mb=0.002",
       "training.eval_every=0", "training.checkpoint_every=0", "training.keep_checkpoints=5"});
}

// Every tensor a rank holds (parameters, optimizer state), by name and global row.
using Rows = std::map<int64_t, std::vector<double>>;
using Snapshot = std::map<std::string, Rows>;

void add_rows(Snapshot& out, const std::string& name, const Tensor& t, const model::RowMap& rows) {
  const int64_t n = t.shape.ndim() == 0 ? 1 : t.dim(0), width = n ? t.numel() / n : 0;
  // f32 parameters and state; Adafactor's per-expert log-decay is f64.
  for (int64_t i = 0; i < n; ++i) {
    std::vector<double>& row = out[name][rows.global(i)];
    if (t.dtype == DType::F64) {
      row.assign(t.ptr<double>() + i * width, t.ptr<double>() + (i + 1) * width);
    } else {
      row.assign(t.ptr<float>() + i * width, t.ptr<float>() + (i + 1) * width);
    }
  }
}

Snapshot snapshot(Job& job) {
  Snapshot out;
  for (const auto& p : job.parameters().all()) add_rows(out, p->name, p->value.tensor(), p->rows);
  for (const NamedTensor& s : job.optimizer().prepare_state(job.parameters().slots())) {
    const auto& p = job.parameters().get(s.name.substr(0, s.name.rfind('/')));
    add_rows(out, s.name, s.tensor, p.rows);
  }
  return out;
}

// Every row of `part` (a rank's share) equals the same global row of `whole`, within tol.
void expect_rows(const Snapshot& part, const Snapshot& whole, double tol, const std::string& what) {
  ASSERT_FALSE(part.empty()) << what;
  for (const auto& [name, rows] : part) {
    auto it = whole.find(name);
    ASSERT_NE(it, whole.end()) << what << ": " << name;
    for (const auto& [row, values] : rows) {
      auto r = it->second.find(row);
      ASSERT_NE(r, it->second.end()) << what << ": " << name << " row " << row;
      ASSERT_EQ(values.size(), r->second.size()) << name;
      double worst = 0;
      for (size_t i = 0; i < values.size(); ++i)
        worst = std::max(worst, std::abs(double(values[i]) - double(r->second[i])));
      if (tol == 0) {
        ASSERT_EQ(values, r->second) << what << ": " << name << " row " << row;
      } else {
        ASSERT_LE(worst, tol) << what << ": " << name << " row " << row;
      }
    }
  }
}

std::vector<StepResult> train(Trainer& t, int steps) {
  std::vector<StepResult> out;
  for (int i = 0; i < steps; ++i) out.push_back(t.step());
  return out;
}

void expect_close_results(const std::vector<StepResult>& a, const std::vector<StepResult>& b,
                          double rel) {
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_NEAR(a[i].loss, b[i].loss, rel * std::abs(b[i].loss)) << "step " << i + 1;
    EXPECT_NEAR(a[i].grad_norm, b[i].grad_norm, rel * std::abs(b[i].grad_norm)) << "step " << i + 1;
    EXPECT_EQ(a[i].learning_rate, b[i].learning_rate);
    EXPECT_EQ(a[i].tokens, b[i].tokens);
  }
}

class TrainerTest : public ::testing::TestWithParam<const char*> {};

// The world-size invariance of the whole step: N ranks against one process on this rank.
TEST_P(TrainerTest, NRanksMatchOneProcess) {
  Env env(std::string("match_") + GetParam());
  Trainer world(tiny(env.dir + "/world", GetParam()), *env.world);
  Trainer one(tiny(fmt::format("{}/self{}", env.dir, env.world->rank()), GetParam()), *env.self);
  const auto a = train(world, 4), b = train(one, 4);
  expect_close_results(a, b, 1e-5);
  for (size_t i = 1; i < a.size(); ++i) EXPECT_NE(a[i].loss, a[i - 1].loss);
  // Lazy Adafactor keeps each expert's statistics as of its own last update, and a rank holding
  // a replicated shard updates it densely: compare the statistics brought to the same update.
  for (Trainer* t : {&world, &one}) {
    if (auto* adafactor = dynamic_cast<Adafactor*>(&t->job().optimizer()))
      adafactor->catch_up_all(t->job().parameters().slots(), t->state().step);
  }
  expect_rows(snapshot(world.job()), snapshot(one.job()), 1e-5, "after 4 steps");
  EXPECT_EQ(world.state().step, 4);
}

TEST_P(TrainerTest, ResumeIsBitIdentical) {
  Env env(std::string("resume_") + GetParam());
  std::vector<StepResult> straight;
  Snapshot straight_state;
  {
    Trainer t(tiny(env.dir + "/straight", GetParam()), *env.world);
    straight = train(t, 20);
    straight_state = snapshot(t.job());
  }
  const config::Config cfg = tiny(env.dir + "/split", GetParam());
  std::vector<StepResult> split;
  {
    Trainer t(cfg, *env.world);
    split = train(t, 10);
    EXPECT_EQ(t.save(), env.dir + "/split/step-00000010");
  }
  Trainer t(cfg, *env.world);
  t.resume("auto");
  ASSERT_EQ(t.state().step, 10);
  for (const StepResult& r : train(t, 10)) split.push_back(r);
  ASSERT_EQ(split.size(), straight.size());
  for (size_t i = 0; i < split.size(); ++i) {
    EXPECT_EQ(split[i].loss, straight[i].loss) << "step " << i + 1;
    EXPECT_EQ(split[i].grad_norm, straight[i].grad_norm) << "step " << i + 1;
  }
  expect_rows(snapshot(t.job()), straight_state, 0, "resumed vs straight");
}

// Resharding by reading: N ranks -> 1 and 1 -> N reproduce every row bit for bit; training then
// continues as one process does from the same state.
TEST_P(TrainerTest, ReshardsByReading) {
  Env env(std::string("reshard_") + GetParam());
  Trainer world(tiny(env.dir + "/world", GetParam()), *env.world);
  train(world, 3);
  const std::string written_at_n = world.save();
  Trainer one(tiny(fmt::format("{}/self{}", env.dir, env.world->rank()), GetParam()), *env.self);
  one.resume(written_at_n);
  EXPECT_EQ(one.state().step, 3);
  expect_rows(snapshot(world.job()), snapshot(one.job()), 0, "written at N, read at 1");

  train(one, 2);
  const std::string written_at_1 = one.save();
  env.world->barrier();
  Trainer back(tiny(env.dir + "/back", GetParam()), *env.world);
  back.resume(fmt::format("{}/self0/step-00000005", env.dir));
  EXPECT_EQ(back.state().step, 5);
  expect_rows(snapshot(back.job()), snapshot(one.job()), 0, "written at 1, read at N");
  expect_close_results(train(back, 2), train(one, 2), 1e-5);
  (void)written_at_1;
}

INSTANTIATE_TEST_SUITE_P(Optimizers, TrainerTest, ::testing::Values("ADAMW", "ADAFACTOR"));

void flip_byte(const std::string& file, int64_t offset) {
  std::fstream f(file, std::ios::in | std::ios::out | std::ios::binary);
  f.seekg(offset);
  char c = 0;
  f.read(&c, 1);
  c ^= 0x10;
  f.seekp(offset);
  f.write(&c, 1);
}

checkpoint::CheckpointManifest read_manifest(const std::string& path) {
  checkpoint::CheckpointManifest m;
  EXPECT_TRUE(
      m.ParseFromString(checkpoint::read_framed_file(path + "/manifest.pb", "MOWECKPT", 1)));
  return m;
}

TEST(TrainerCheckpoint, RefusesWhatItCannotResumeFrom) {
  Env env("refuse");
  const config::Config cfg = tiny(env.dir + "/ckpt", "ADAMW");
  std::string step2, step4;
  {
    Trainer t(cfg, *env.world);
    train(t, 2);
    step2 = t.save();
    train(t, 2);
    step4 = t.save();
  }
  // Another bucket layout: the same files, another model.mowe.
  config::Config other = cfg;
  other.mutable_model()->mutable_mowe()->set_num_unrouted_ids(5);
  {
    Trainer t(other, *env.world);
    testing::expect_error([&] { t.resume(step4); },
                          {"another bucket layout", "bucket_layout hash is", "this job's is"});
  }
  // Another data.seed: another order of examples, refused by the loader.
  config::Config reseeded = cfg;
  reseeded.mutable_data()->set_seed(7);
  {
    Trainer t(reseeded, *env.world);
    testing::expect_error([&] { t.resume(step4); }, {"another corpus, tokenizer or data.seed"});
  }
  Trainer t(cfg, *env.world);
  // Another routing vocabulary: the manifest says so.
  const std::string copy = env.dir + "/other_vocab";
  if (env.world->rank() == 0) {
    fs::copy(step2, copy, fs::copy_options::recursive);
    checkpoint::CheckpointManifest m = read_manifest(copy);
    for (auto& fp : *m.mutable_fingerprints())
      if (fp.name() == "routing_vocab") fp.set_value(fp.value() ^ 1);
    checkpoint::write_framed_file(copy + "/manifest.pb", "MOWECKPT", 1, m.SerializeAsString());
  }
  env.world->barrier();
  testing::expect_error([&] { t.resume(copy); },
                        {"another routing vocabulary", "routing_vocab hash is"});
  // A flipped byte in the first block of an expert tensor: named by the rank that reads it.
  if (env.world->rank() == 0) {
    const checkpoint::CheckpointManifest m = read_manifest(step4);
    for (const auto& rec : m.tensors())
      if (rec.name() == "mowe.bucket0.wo") flip_byte(step4 + "/" + rec.file(), rec.offset() + 5);
  }
  env.world->barrier();
  testing::expect_error([&] { t.resume(step4); }, {"'mowe.bucket0.wo'", "damaged"});
  // --resume auto skips the damaged newest checkpoint and takes the one before it.
  t.resume("auto");
  EXPECT_EQ(t.state().step, 2);
  // A truncated manifest: refused, never a crash.
  if (env.world->rank() == 0) fs::resize_file(step2 + "/manifest.pb", 30);
  env.world->barrier();
  testing::expect_error([&] { t.resume(step2); }, {"manifest.pb", "truncated"});
}

// Every parameter's bytes, NaNs included (a vector<float> comparison would fail on NaN).
std::vector<std::string> value_bytes(Job& job) {
  std::vector<std::string> out;
  for (const auto& p : job.parameters().all())
    out.emplace_back(static_cast<const char*>(p->value.tensor().data), p->value.tensor().nbytes());
  return out;
}

// parallel.grad_bucket_mb anywhere in its allowed range: a bucket per gradient, or one bucket.
TEST(TrainerConfig, GradientBucketsAtTheExtremes) {
  Env env("buckets");
  std::vector<double> losses;
  for (const char* mb : {"1e-30", "1e30"}) {
    config::Config cfg = tiny(env.dir + "/" + mb, "ADAMW");
    cfg.mutable_parallel()->set_grad_bucket_mb(std::stod(mb));
    Trainer t(cfg, *env.world);
    losses.push_back(t.step().loss);
    losses.push_back(t.step().loss);
  }
  // The same sums; only their grouping into messages (and so perhaps the reduction order) changes.
  EXPECT_NEAR(losses[1], losses[3], 1e-6 * std::abs(losses[3]));
}

// Greedy decoding is collective and dealt across ranks: N ranks decode what one process decodes,
// and each continuation is the model's own argmax (forcing a prefix of it gives its next token).
TEST(TrainerDecode, GreedyMatchesOneProcessAndItsOwnArgmax) {
  Env env("decode");
  Trainer world(tiny(env.dir + "/world", "ADAMW"), *env.world);
  Trainer one(tiny(fmt::format("{}/one{}", env.dir, env.world->rank()), "ADAMW"), *env.self);
  train(world, 3);
  train(one, 3);
  std::vector<DecodeRequest> requests;
  for (int i = 0; i < 5; ++i) requests.push_back({world.job().eval_loader().example(i).inputs, {}});
  constexpr int kMax = 6;
  const auto decoded = greedy_decode(world.runner(), world.job(), requests, kMax, false, 2);
  ASSERT_EQ(decoded.size(), requests.size());
  EXPECT_EQ(decoded, greedy_decode(one.runner(), one.job(), requests, kMax, false, 3));
  int tokens = 0;
  for (const auto& d : decoded) tokens += static_cast<int>(d.size());
  EXPECT_GT(tokens, 0) << "nothing decoded";
  for (size_t i = 0; i < requests.size(); ++i) {
    for (size_t k = 0; k < decoded[i].size(); ++k) {
      DecodeRequest forced = requests[i];
      forced.forced.assign(decoded[i].begin(), decoded[i].begin() + k);
      const auto next = greedy_decode(world.runner(), world.job(), {forced}, 1, false, 1);
      ASSERT_EQ(next[0], std::vector<int32_t>{decoded[i][k]}) << "request " << i << " at " << k;
    }
  }
}

// The loader thread attaches to every batch the routing model::route_batch gives its routing ids
// with the job's plan, and the model's inputs carry it; a batch without one (decoding) makes the
// model route its tokens itself.
TEST(TrainerBatches, LoaderThreadAttachesThePlansRouting) {
  Env env("attached_routing");
  Trainer t(tiny(env.dir, "ADAMW"), *env.world);
  Job& job = t.job();
  ASSERT_NE(job.plan(), nullptr);
  const int32_t deactivate = job.config().model().mowe().deactivate_routing_ids_above();
  for (int s = 0; s < 3; ++s) {
    const data::Batch& b = job.train_loader().next();
    const model::RoutedBatch* routed = attached_routing(b);
    ASSERT_NE(routed, nullptr) << "step " << s;
    EXPECT_EQ(model_inputs(b).routed, routed);
    model::RoutedBatch expected;
    model::route_batch(*job.plan(), env.world->rank(), b.encoder_routing_ids, b.decoder_routing_ids,
                       deactivate, &expected);
    for (auto [got, want] : {std::pair{&routed->encoder, &expected.encoder},
                             std::pair{&routed->decoder, &expected.decoder}}) {
      EXPECT_EQ(got->num_tokens, want->num_tokens);
      EXPECT_EQ(got->send_order, want->send_order);
      EXPECT_EQ(got->send_keys, want->send_keys);
      EXPECT_EQ(got->send_rows, want->send_rows);
    }
    EXPECT_GT(routed->encoder.send_order.size(), 0u) << "no token routed";
  }
  EXPECT_EQ(attached_routing(data::Batch{}), nullptr);
}

// Probe questions: documents of the training split with the gloss head replaced by
// <extra_id_0>, the hidden words as the answer, inputs within data.input_length.
TEST(TrainerDecode, WordnetProbeMasksTheGlossHead) {
  Env env("probe");
  Trainer t(tiny(env.dir + "/ckpt", "ADAMW"), *env.world);
  const data::Tokenizer& tok = *t.job().data().tokenizer;
  const auto items = wordnet_probe(t.job().config(), tok, 40, 7);
  ASSERT_EQ(items.size(), 40u);
  EXPECT_EQ(wordnet_probe(t.job().config(), tok, 40, 7)[5].masked, items[5].masked);
  const auto& data = t.job().config().data();
  for (const ProbeItem& it : items) {
    ASSERT_FALSE(it.answer.empty());
    const size_t at = it.masked.find("<extra_id_0>");
    ASSERT_NE(at, std::string::npos) << it.masked;
    std::string doc = it.masked;
    doc.replace(at, 12, it.answer);
    EXPECT_FALSE(data::split_corpus({doc}, data.validation_fraction(), data.seed()).train.empty())
        << "not a training document: " << doc;
    EXPECT_LE(std::count_if(it.answer.begin(), it.answer.end(), [](char c) { return c == ' '; }),
              2);
    const auto& in = it.request.inputs;
    EXPECT_EQ(std::count(in.begin(), in.end(), tok.sentinel(0)), 1);
    EXPECT_EQ(in.back(), data::Tokenizer::kEosId);
    EXPECT_LE(static_cast<int64_t>(in.size()), data.input_length());
    EXPECT_EQ(it.request.forced, std::vector<int32_t>{tok.sentinel(0)});
  }
}

TEST(TrainerNumerics, NonFiniteStepsAreSkippedThenDivergenceStops) {
  Env env("numerics");
  config::Config cfg = tiny(env.dir + "/ckpt", "ADAMW");
  cfg.mutable_training()->set_max_bad_steps(3);
  Trainer t(cfg, *env.world);
  train(t, 2);
  // A NaN in a norm scale every token passes through (dense: the same on every rank).
  model::Parameter* norm = nullptr;
  for (const auto& p : t.job().parameters().all())
    if (!norm && p->kind == model::ParamKind::Dense && p->name.find("norm") != std::string::npos)
      norm = p.get();
  ASSERT_NE(norm, nullptr);
  float& poisoned = norm->value.tensor().ptr<float>()[0];
  const float good = poisoned;
  poisoned = std::nanf("");
  const std::vector<std::string> before = value_bytes(t.job());
  const StepResult bad = t.step();
  EXPECT_TRUE(bad.skipped);
  EXPECT_FALSE(std::isfinite(bad.loss));
  EXPECT_EQ(bad.first_bad, "value of '" + norm->name + "' on rank 0");
  EXPECT_EQ(t.state().step, 3);
  EXPECT_EQ(value_bytes(t.job()), before) << "a skipped step changed a parameter";
  poisoned = good;
  const StepResult recovered = t.step();
  EXPECT_FALSE(recovered.skipped);
  EXPECT_TRUE(std::isfinite(recovered.loss));
  // Three bad steps in a row end the run with the step named, on every rank alike.
  poisoned = std::nanf("");
  testing::expect_error([&] { t.run(); }, {"diverged at step 7", "3 steps in a row"});
  EXPECT_EQ(t.state().step, 7);
}

// One metrics.jsonl record: {"step":N,"time":T,"tag":value|null,...} as a map (null: NaN).
std::map<std::string, double> parse_record(const std::string& line) {
  std::map<std::string, double> out;
  size_t i = 0;
  while ((i = line.find('"', i)) != std::string::npos) {
    const size_t end = line.find('"', i + 1);
    const std::string key = line.substr(i + 1, end - i - 1);
    size_t v = line.find(':', end) + 1;
    out[key] = line.compare(v, 4, "null") == 0 ? NAN : std::strtod(line.c_str() + v, nullptr);
    i = line.find_first_of(",}", v);
  }
  return out;
}

// All records of a metrics.jsonl, merged per step.
std::map<int64_t, std::map<std::string, double>> read_metrics(const std::string& path) {
  std::map<int64_t, std::map<std::string, double>> out;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    auto record = parse_record(line);
    auto& merged = out[static_cast<int64_t>(record.at("step"))];
    for (const auto& [k, v] : record) {
      EXPECT_TRUE(k == "step" || k == "time" || !merged.count(k)) << k << " twice in " << path;
      merged[k] = v;
    }
  }
  return out;
}

// run() writes every step's scalars; they are the step's own values (the losses of the same
// steps taken one by one), the expert load obeys its invariants at every world size, and a
// resume from an earlier checkpoint replaces the abandoned steps instead of repeating them.
TEST(TrainerMetrics, RunWritesEveryStepAndResumeReplacesAbandonedSteps) {
  Env env("metrics");
  config::Config cfg = tiny(env.dir + "/run/checkpoints", "ADAMW");
  cfg.mutable_training()->set_steps(6);
  cfg.mutable_training()->set_log_every(2);
  cfg.mutable_training()->set_checkpoint_every(4);
  cfg.mutable_training()->set_eval_every(3);
  cfg.mutable_training()->set_eval_batches(1);
  ASSERT_GT(cfg.data().validation_fraction(), 0);
  {
    Trainer t(cfg, *env.world);
    const RunResult r = t.run();
    EXPECT_EQ(r.metrics.empty(), env.world->rank() != 0);
    EXPECT_TRUE(std::isfinite(r.eval_loss));
  }
  config::Config by_hand_cfg = cfg;
  by_hand_cfg.mutable_training()->set_checkpoint_dir(env.dir + "/by_hand");
  Trainer by_hand(by_hand_cfg, *env.world);
  const std::vector<StepResult> expected = train(by_hand, 6);
  const std::string jsonl = env.dir + "/run/checkpoints/metrics.jsonl";
  const int world = env.world->size();
  const auto check = [&](const char* when) {
    if (env.world->rank() != 0) return;
    const auto records = read_metrics(jsonl);
    ASSERT_EQ(records.size(), 6u) << when;
    for (int64_t step = 1; step <= 6; ++step) {
      const auto& m = records.at(step);
      const StepResult& e = expected[step - 1];
      EXPECT_DOUBLE_EQ(m.at("train/loss"), e.loss) << when << " step " << step;
      EXPECT_DOUBLE_EQ(m.at("train/grad_norm"), e.grad_norm) << when << " step " << step;
      EXPECT_EQ(m.at("train/real_tokens"), double(e.tokens));
      double rows = 0;
      for (int b = 0; b < cfg.model().mowe().buckets_size(); ++b) {
        const std::string tag = fmt::format("load/bucket{}_", b);
        rows += m.at(tag + "rows");
        EXPECT_EQ(m.at(tag + "rows"), double(e.bucket_rows[b]));
        if (e.bucket_rows[b] > 0) {
          EXPECT_GE(m.at(tag + "max_over_mean"), 1.0 - 1e-12);
          EXPECT_LE(m.at(tag + "max_over_mean"), world + 1e-12);
        }
      }
      // Every routed token is computed by exactly one expert on one rank.
      EXPECT_EQ(rows, m.at("load/routed_tokens")) << when << " step " << step;
      EXPECT_GT(m.at("load/unrouted_share"), 0);
      EXPECT_LT(m.at("load/unrouted_share"), 1);
      EXPECT_EQ(m.count("perf/mfu"), step % 2 == 0 ? 1u : 0u) << "log steps only";
      if (step % 2 == 0) {
        EXPECT_GT(m.at("perf/tokens_per_second"), 0);
        EXPECT_GT(m.at("perf/mfu"), 0);
        EXPECT_LT(m.at("perf/mfu"), 1);
      }
      EXPECT_EQ(m.count("eval/loss"), step % 3 == 0 ? 1u : 0u) << step;
    }
    ASSERT_FALSE(fs::is_empty(env.dir + "/run/checkpoints/tb"));
  };
  check("after the run");
  // The global routing does not depend on the world size.
  if (world > 1) {
    Trainer one(tiny(fmt::format("{}/one{}", env.dir, env.world->rank()), "ADAMW"), *env.self);
    const StepResult s = one.step();
    EXPECT_EQ(s.bucket_rows, expected[0].bucket_rows);
    EXPECT_EQ(s.routed_tokens, expected[0].routed_tokens);
    EXPECT_EQ(s.mowe_tokens, expected[0].mowe_tokens);
  }
  // Resume at step 4: steps 5 and 6 are trained again and written once.
  {
    Trainer t(cfg, *env.world);
    t.resume(env.dir + "/run/checkpoints/step-00000004");
    t.run();
  }
  check("after resuming at step 4");
}

// Fine-tuning on WORDNET_QA with the experts frozen, as configs/wordnet_finetune.textproto does.
config::Config finetune(const std::string& checkpoint_dir, const std::string& init_from = "") {
  config::Config cfg = tiny(checkpoint_dir, "ADAMW");
  cfg.mutable_data()->set_task(config::DataConfig::WORDNET_QA);
  cfg.mutable_data()->set_target_length(8);
  cfg.mutable_model()->mutable_mowe()->set_freeze_experts(true);
  cfg.mutable_training()->set_init_from(init_from);
  train::validate(cfg);
  return cfg;
}

Snapshot parameter_snapshot(Job& job) {
  Snapshot out;
  for (const auto& p : job.parameters().all()) add_rows(out, p->name, p->value.tensor(), p->rows);
  return out;
}

std::map<std::string, std::string> bytes_of_kind(Job& job, model::ParamKind kind) {
  std::map<std::string, std::string> out;
  for (const auto& p : job.parameters().all())
    if (p->kind == kind)
      out[p->name] =
          std::string(static_cast<const char*>(p->value.tensor().data), p->value.tensor().nbytes());
  return out;
}

TEST(TrainerFineTune, FrozenExpertsStayBitIdenticalWhileDenseParametersTrain) {
  Env env("frozen");
  Trainer t(finetune(env.dir + "/ckpt"), *env.world);
  const auto experts = bytes_of_kind(t.job(), model::ParamKind::Expert);
  const auto dense = bytes_of_kind(t.job(), model::ParamKind::Dense);
  ASSERT_FALSE(experts.empty()) << "this rank holds no expert tensor";
  for (const StepResult& r : train(t, 4)) EXPECT_FALSE(r.skipped);
  EXPECT_EQ(bytes_of_kind(t.job(), model::ParamKind::Expert), experts);
  const auto after = bytes_of_kind(t.job(), model::ParamKind::Dense);
  ASSERT_EQ(after.size(), dense.size());
  for (const auto& [name, bytes] : dense) EXPECT_NE(after.at(name), bytes) << name << " unchanged";
}

TEST(TrainerFineTune, InitFromLoadsParametersAndOwnCheckpointWins) {
  Env env("init_from");
  Snapshot pretrained;
  {
    Trainer pre(tiny(env.dir + "/pre", "ADAMW"), *env.world);
    train(pre, 3);
    pre.save();
    pretrained = parameter_snapshot(pre.job());
  }
  // A checkpoint_dir (its newest checkpoint) and a step directory load the same parameters.
  for (const std::string& from : {env.dir + "/pre", env.dir + "/pre/step-00000003"}) {
    Trainer ft(finetune(env.dir + "/ft_" + std::to_string(from.size()), from), *env.world);
    ft.resume("auto");
    EXPECT_EQ(ft.state().step, 0);
    EXPECT_EQ(ft.state().loader.next_example(), 0);
    expect_rows(parameter_snapshot(ft.job()), pretrained, 0, "initialised from " + from);
    // Fresh AdamW moments: all zero.
    for (const NamedTensor& s : ft.job().optimizer().prepare_state(ft.job().parameters().slots()))
      for (int64_t i = 0; i < s.tensor.numel(); ++i)
        ASSERT_EQ(s.tensor.ptr<float>()[i], 0.0f) << s.name;
  }
  const config::Config cfg = finetune(env.dir + "/ft", env.dir + "/pre");
  Snapshot tuned;
  {
    Trainer ft(cfg, *env.world);
    ft.resume("auto");
    train(ft, 2);
    EXPECT_EQ(ft.save(), env.dir + "/ft/step-00000002");
    tuned = snapshot(ft.job());
  }
  // Preempted and restarted with --resume auto: its own checkpoint, not the pre-trained one.
  Trainer again(cfg, *env.world);
  again.resume("auto");
  EXPECT_EQ(again.state().step, 2);
  expect_rows(snapshot(again.job()), tuned, 0, "resumed fine-tuning");
  // Neither a checkpoint nor a directory of them: named.
  Trainer bad(finetune(env.dir + "/bad", env.dir + "/nowhere"), *env.world);
  testing::expect_error([&] { bad.resume("none"); },
                        {"training.init_from '" + env.dir + "/nowhere' is not a checkpoint"});
}

std::vector<int32_t> row(const std::vector<int32_t>& v, int r, int width) {
  return std::vector<int32_t>(v.begin() + r * width, v.begin() + (r + 1) * width);
}

// The tokens before EOS.
std::vector<int32_t> before_eos(const std::vector<int32_t>& ids) {
  return std::vector<int32_t>(ids.begin(),
                              std::find(ids.begin(), ids.end(), data::Tokenizer::kEosId));
}

// WORDNET_QA batches with the real tokenizer: a known synset's question and answer, only
// training synsets in training batches, N ranks slicing one process's global batch, and a
// restored loader continuing identically.
TEST(TrainerFineTune, QaBatchesAskAboutTrainingSynsets) {
  Env env("qa_loader");
  // Long enough for "a member of" in the tiny tokenizer's short pieces: nothing is cut.
  const auto qa = [](const std::string& dir) {
    config::Config cfg = finetune(dir);
    cfg.mutable_data()->set_target_length(16);
    return cfg;
  };
  Trainer world(qa(env.dir + "/world"), *env.world);
  Trainer one(qa(fmt::format("{}/one{}", env.dir, env.world->rank())), *env.self);
  const data::DataPipeline& d = world.job().data();
  const data::Tokenizer& tok = *d.tokenizer;
  ASSERT_TRUE(d.qa_train && d.qa_validation);
  ASSERT_GT(d.qa_validation->size(), 0);
  // "dog" (a member of the genus Canis): its question and answer as the loader gives them.
  const std::vector<int32_t> question = tok.encode("what is a dog?"),
                             answer = tok.encode("a member of");
  int64_t dog = -1;
  for (int64_t i = 0; i < d.qa_train->size() && dog < 0; ++i)
    if (d.qa_train->inputs(i) == question && d.qa_train->targets(i) == answer) dog = i;
  ASSERT_GE(dog, 0) << "the dog synset is not a training question";
  int64_t g = 0;
  while (d.qa_train->pair_of(g) != dog) ++g;
  const data::Example ex = world.job().train_loader().example(g);
  std::vector<int32_t> expected = question;
  expected.push_back(data::Tokenizer::kEosId);
  EXPECT_EQ(ex.inputs, expected);
  expected = answer;
  expected.push_back(data::Tokenizer::kEosId);
  EXPECT_EQ(ex.targets, expected);
  // The tiny tokenizer has no piece for '?' (it decodes as <unk>); the words are exact.
  EXPECT_EQ(tok.decode(before_eos(ex.inputs)).rfind("what is a dog ", 0), 0u)
      << tok.decode(ex.inputs);
  EXPECT_EQ(tok.decode(before_eos(ex.targets)), "a member of");

  // Validation pairs that no training pair equals must never appear in a training batch.
  std::set<std::pair<std::vector<int32_t>, std::vector<int32_t>>> train_pairs, held_out;
  for (int64_t i = 0; i < d.qa_train->size(); ++i)
    train_pairs.insert({d.qa_train->inputs(i), d.qa_train->targets(i)});
  for (int64_t i = 0; i < d.qa_validation->size(); ++i)
    if (!train_pairs.count({d.qa_validation->inputs(i), d.qa_validation->targets(i)}))
      held_out.insert({d.qa_validation->inputs(i), d.qa_validation->targets(i)});
  ASSERT_FALSE(held_out.empty());
  data::Loader& loader = world.job().train_loader();
  const int B = static_cast<int>(loader.local_batch_size()), T = 32, D = 16;
  const int64_t global = world.job().config().training().global_batch_size();
  for (int64_t step = 0; step < 50; ++step) {
    const data::Batch b = loader.batch_at(step, step * global);
    const data::Batch all = one.job().train_loader().batch_at(step, step * global);
    ASSERT_EQ(b.input_length, T);
    ASSERT_EQ(b.target_length, D);
    for (int r = 0; r < B; ++r) {
      const auto in = before_eos(row(b.encoder_input_ids, r, T)),
                 out = before_eos(row(b.targets, r, D));
      EXPECT_FALSE(held_out.count({in, out})) << "held-out question " << tok.decode(in);
      const int whole = env.world->rank() * B + r;  // the same row of one process's batch
      EXPECT_EQ(row(b.encoder_input_ids, r, T), row(all.encoder_input_ids, whole, T));
      EXPECT_EQ(row(b.targets, r, D), row(all.targets, whole, D));
      EXPECT_EQ(row(b.decoder_routing_ids, r, D), row(all.decoder_routing_ids, whole, D));
    }
  }
  // Save after 3 steps, take 2 more, restore: the same 2 again.
  for (int s = 0; s < 3; ++s) loader.next();
  const data::LoaderState saved = loader.state();
  const data::Batch b4 = loader.next(), b5 = loader.next();
  loader.restore(saved);
  EXPECT_EQ(loader.next().encoder_input_ids, b4.encoder_input_ids);
  EXPECT_EQ(loader.next().targets, b5.targets);
  // The validation loss is the eval loader's, on held-out questions.
  EXPECT_TRUE(std::isfinite(evaluate(world.runner(), world.job(), 1)));
}

}  // namespace
}  // namespace mowe::train
