// Dispatch plan files: save/load round trip, the trainer-side refusal of a plan built for another
// world size, routing vocabulary or bucket configuration (both values in the message), corrupted
// files (every flipped bit, every truncation, the old unframed format: each refused naming the
// file and the exact mowe_plan command), the vocabulary hash and the inputs derived from a config.
#include "model/dispatch_plan_file.h"

#include <gtest/gtest.h>

#include <unistd.h>
#include <filesystem>
#include <fstream>

#include "runtime/check.h"
#include "runtime/config/config.h"
#include "runtime/files.h"
#include "tests/util/expect_error.h"

namespace mowe::model {
namespace {

using mowe::testing::expect_error;

namespace fs = std::filesystem;

class PlanFiles : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("dispatch_plan_file_test." + std::to_string(::getpid()));
    fs::create_directories(dir_);
    // The command line messages repeat in their rebuild commands.
    const char* argv[] = {"test",         "--config", "configs/x.textproto", "--set",
                          "data.seed=7 ", "--set",    "parallel.plan=p.pb"};
    config::parse_common_flags(7, const_cast<char**>(argv));
    config_.mutable_training()->set_global_batch_size(4);
    config_.mutable_data()->set_input_length(32);
    config_.mutable_data()->set_routing_vocab((dir_ / "vocab.pb").string());
    config_.mutable_parallel()->set_plan((dir_ / "plan.pb").string());
    config::MoweConfig& m = *config_.mutable_model()->mutable_mowe();
    m.set_routing_vocab_size(64);
    m.set_num_unrouted_ids(2);
    for (auto [ids, blocks, per_block] : {std::tuple{10, 4, 3}, std::tuple{0, 2, 5}}) {
      config::BucketConfig* b = m.add_buckets();
      b->set_num_routing_ids(ids), b->set_num_blocks(blocks), b->set_experts_per_block(per_block);
    }
  }
  void TearDown() override { fs::remove_all(dir_); }

  // A routing vocabulary of 40 pieces and `words` auxiliary words, with frequencies.
  data::RoutingVocab write_vocab(int words, int64_t bump = 0) {
    data::RoutingVocabFile f;
    f.set_format_version(data::RoutingVocab::kFormatVersion);
    f.set_tokenizer_hash(77);
    f.set_default_vocab_size(40);
    for (int w = 0; w < words; ++w) {
      data::RoutingEntry* e = f.add_entries();
      e->set_word("w" + std::to_string(w));
      e->add_tokens(w % 40), e->add_tokens((w + 1) % 40);
    }
    for (int id = 0; id < 40 + words; ++id) f.add_frequency(1000 / (id + 1) + (id == 5 ? bump : 0));
    data::RoutingVocab::from_file(f).save(config_.data().routing_vocab());
    return data::RoutingVocab::load(config_.data().routing_vocab());
  }

  DispatchPlan build(const data::RoutingVocab& vocab, int world_size) {
    return DispatchPlan::build(config_.model().mowe(),
                               plan_inputs(config_, "configs/x.textproto", vocab, world_size));
  }

  std::string plan_path() const { return config_.parallel().plan(); }
  // The command every refusal of plan_path() ends with.
  std::string rebuild(int world_size) const {
    return fmt::format(
        "rebuild it with mowe_plan --config configs/x.textproto --set 'data.seed=7 ' --set "
        "parallel.plan=p.pb --world-size {} --out {}",
        world_size, plan_path());
  }

  fs::path dir_;
  config::Config config_;
};

// Plain writes: the atomic, fsynced kind would make a thousand damaged copies slow.
void overwrite(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes;
}

std::string slurp(const std::string& path) {
  return read_file(path, "test file");
}

TEST_F(PlanFiles, SaveLoadRoundTrip) {
  const data::RoutingVocab vocab = write_vocab(20);
  const DispatchPlan plan = build(vocab, 2);
  save_plan(plan, config_.parallel().plan());
  const DispatchPlan back = load_plan(config_.parallel().plan());
  EXPECT_EQ(back.source(), config_.parallel().plan());
  EXPECT_EQ(back.world_size(), 2);
  EXPECT_EQ(back.vocab_hash(), routing_vocab_hash(vocab));
  EXPECT_EQ(back.bucket_config_hash(), bucket_config_hash(config_.model().mowe()));
  EXPECT_EQ(back.config_path(), "configs/x.textproto");
  EXPECT_EQ(back.table().bucket_array(), plan.table().bucket_array());
  EXPECT_EQ(back.table().expert_array(), plan.table().expert_array());
  EXPECT_EQ(back.tokens_per_step(), plan.tokens_per_step());
  for (int b = 0; b < plan.num_buckets(); ++b) {
    EXPECT_EQ(back.table().expected_loads(b), plan.table().expected_loads(b));
    for (int r = 0; r < 2; ++r) {
      EXPECT_TRUE(std::ranges::equal(back.blocks_of(r, b), plan.blocks_of(r, b)));
      EXPECT_DOUBLE_EQ(back.expected_tokens(r, b), plan.expected_tokens(r, b));
    }
  }
  EXPECT_EQ(back.to_proto().SerializeAsString(), plan.to_proto().SerializeAsString());
  EXPECT_TRUE(fs::exists(config_.parallel().plan()));
  for (const auto& entry : fs::directory_iterator(dir_))  // no temporary left behind
    EXPECT_EQ(entry.path().string().find(".tmp."), std::string::npos) << entry.path();
}

TEST_F(PlanFiles, TrainerRefusesAnotherWorldSize) {
  const data::RoutingVocab vocab = write_vocab(20);
  save_plan(build(vocab, 4), config_.parallel().plan());
  EXPECT_EQ(load_plan_for(config_, vocab, 4).world_size(), 4);
  expect_error([&] { load_plan_for(config_, vocab, 2); },
               {"dispatch plan " + config_.parallel().plan(), "built for 4 ranks", "this job has 2",
                "mowe_plan --config configs/x.textproto --world-size 2"});
}

TEST_F(PlanFiles, TrainerRefusesAnotherVocabulary) {
  const data::RoutingVocab old_vocab = write_vocab(20);
  save_plan(build(old_vocab, 2), config_.parallel().plan());
  const data::RoutingVocab new_vocab = write_vocab(20, /*bump=*/1);  // one frequency differs
  const uint64_t old_hash = routing_vocab_hash(old_vocab), new_hash = routing_vocab_hash(new_vocab);
  ASSERT_NE(old_hash, new_hash);
  expect_error([&] { load_plan_for(config_, new_vocab, 2); },
               {"routing vocabulary hash " + fmt::format("{:016x}", old_hash),
                "has hash " + fmt::format("{:016x}", new_hash), "--world-size 2"});
}

TEST_F(PlanFiles, TrainerRefusesAnotherBucketConfiguration) {
  const data::RoutingVocab vocab = write_vocab(20);
  const DispatchPlan plan = build(vocab, 2);
  save_plan(plan, config_.parallel().plan());
  config_.mutable_model()->mutable_mowe()->mutable_buckets(1)->set_expert_d_ff(99);
  const uint64_t now = bucket_config_hash(config_.model().mowe());
  expect_error([&] { load_plan_for(config_, vocab, 2); },
               {fmt::format("bucket configuration hash {:016x}", plan.bucket_config_hash()),
                fmt::format("has hash {:016x}", now)});
}

TEST_F(PlanFiles, RefusesMissingAndCorruptedFiles) {
  expect_error([&] { load_plan((dir_ / "none.pb").string()); }, {"does not exist", "mowe_plan"});
  const data::RoutingVocab vocab = write_vocab(20);
  model::DispatchPlanFile file = build(vocab, 2).to_proto();
  file.mutable_buckets(0)->set_block_rank(1, file.buckets(0).block_rank(0));
  file.mutable_buckets(0)->set_block_rank(2, file.buckets(0).block_rank(0));
  expect_error([&] { DispatchPlan::from_proto(file, "bad.pb"); },
               {"bad.pb", "holds more than 2 blocks of bucket 0"});
  file = build(vocab, 2).to_proto();
  file.set_format_version(99);
  expect_error([&] { DispatchPlan::from_proto(file, "old.pb"); }, {"format version 99"});
  write_file_atomically(config_.parallel().plan(), "not a plan, yet long enough for a header");
  expect_error([&] { load_plan(config_.parallel().plan()); },
               {"is not a dispatch plan file, or its header is damaged"});
}

TEST_F(PlanFiles, ADirectoryIsRefusedNamingTheField) {
  const std::string dir = (dir_ / "a-directory").string();
  std::filesystem::create_directories(dir);
  expect_error([&] { load_plan(dir); },
               {"parallel.plan '" + dir + "' cannot be read as a dispatch plan",
                "not a regular file", "set parallel.plan to the file", "mowe_plan"});
}

TEST_F(PlanFiles, EveryFlippedBitIsRefusedNamingTheFileAndTheCommand) {
  const data::RoutingVocab vocab = write_vocab(20);
  save_plan(build(vocab, 2), plan_path());
  const std::string good = slurp(plan_path());
  ASSERT_EQ(good.substr(0, 8), "MOWEPLAN");
  for (size_t byte = 0; byte < good.size(); ++byte) {
    for (int bit = 0; bit < 8; ++bit) {
      std::string bad = good;
      bad[byte] = static_cast<char>(bad[byte] ^ (1 << bit));
      overwrite(plan_path(), bad);
      std::string what = "(accepted)";
      try {
        load_plan_for(config_, vocab, 2);
      } catch (const Error& e) {
        what = e.what();
      }
      ASSERT_NE(what.find("dispatch plan " + plan_path()), std::string::npos) << what;
      ASSERT_NE(what.find("damaged"), std::string::npos) << "byte " << byte << ": " << what;
      ASSERT_NE(what.find(rebuild(2)), std::string::npos) << what;
    }
  }
  // A payload bit: the checksum, in the words a user reads.
  std::string bad = good;
  bad[good.size() / 2] ^= 0x04;
  overwrite(plan_path(), bad);
  expect_error([&] { load_plan_for(config_, vocab, 2); },
               {"dispatch plan " + plan_path() +
                    " is damaged or truncated (checksum mismatch: "
                    "CRC32C of the payload is",
                rebuild(2)});
}

TEST_F(PlanFiles, TruncatedFilesAreRefusedNamingTheFileAndTheCommand) {
  const data::RoutingVocab vocab = write_vocab(20);
  save_plan(build(vocab, 2), plan_path());
  const std::string good = slurp(plan_path());
  for (size_t size = 0; size < good.size(); ++size) {
    overwrite(plan_path(), good.substr(0, size));
    expect_error([&] { load_plan(plan_path(), 2); },
                 {"dispatch plan " + plan_path() + " is damaged or truncated (", rebuild(2)});
  }
  write_file_atomically(plan_path(), good.substr(0, good.size() - 10));
  expect_error([&] { load_plan(plan_path(), 2); },
               {fmt::format("dispatch plan {} is damaged or truncated (the header announces {} "
                            "payload bytes, the file has {}): {}",
                            plan_path(), good.size() - 24, good.size() - 34, rebuild(2))});
  // Without a world size (mowe_plan --check has one, a bare load does not).
  expect_error([&] { load_plan(plan_path()); }, {"--world-size <ranks> --out " + plan_path()});
}

TEST_F(PlanFiles, OldUnframedFilesAskForARebuild) {
  const data::RoutingVocab vocab = write_vocab(20);
  DispatchPlanFile old = build(vocab, 2).to_proto();
  old.set_format_version(1);  // what format 1 wrote: the bare protobuf
  write_file_atomically(plan_path(), old.SerializeAsString());
  expect_error(
      [&] { load_plan_for(config_, vocab, 2); },
      {"dispatch plan " + plan_path() +
       " was written by an older version of mowe (format 1, without a checksum): " + rebuild(2)});
  // A frame of another version: newer, or a damaged header.
  save_plan(build(vocab, 2), plan_path());
  std::string bytes = slurp(plan_path());
  bytes[8] = 9;
  write_file_atomically(plan_path(), bytes);
  expect_error([&] { load_plan_for(config_, vocab, 2); },
               {"has format version 9, this build reads 2: it was written by a newer version of "
                "mowe, or its header is damaged",
                rebuild(2)});
  // Not a plan at all (say, the routing vocabulary by mistake).
  expect_error([&] { load_plan(config_.data().routing_vocab(), 2); },
               {"dispatch plan " + config_.data().routing_vocab() +
                " is not a dispatch plan file, or its header is damaged"});
}

TEST_F(PlanFiles, VocabularyHashFollowsContentNotStatistics) {
  data::RoutingVocabFile a = write_vocab(20).file();
  data::RoutingVocabFile b = a;
  b.mutable_stats()->set_corpus_words(12345);
  b.set_corpus("elsewhere");
  EXPECT_EQ(routing_vocab_hash(a), routing_vocab_hash(b));
  b.mutable_entries(3)->set_tokens(0, 39);
  EXPECT_NE(routing_vocab_hash(a), routing_vocab_hash(b));
  b = a;
  b.set_case_variants(!a.case_variants());
  EXPECT_NE(routing_vocab_hash(a), routing_vocab_hash(b));
}

TEST_F(PlanFiles, InputsFromTheConfig) {
  // input 32 -> T5 targets 8 (random_spans_helper); batch 4.
  const StepTokens t = step_tokens(config_);
  EXPECT_EQ(t.encoder, 128);
  EXPECT_EQ(t.decoder, 4 * 8);
  config_.mutable_data()->set_target_length(12);
  EXPECT_EQ(step_tokens(config_).decoder, 48);
  config::Config base;  // the paper: 2048 x 512 inputs, 114 targets
  base.mutable_training()->set_global_batch_size(2048);
  EXPECT_EQ(step_tokens(base).encoder, 2048 * 512);
  EXPECT_EQ(step_tokens(base).decoder, 2048 * 114);

  const data::RoutingVocab vocab = write_vocab(20);  // 60 ids, padded to 64
  const std::vector<int64_t> f = padded_frequencies(vocab, "v.pb", 64);
  ASSERT_EQ(f.size(), 64u);
  EXPECT_EQ(f[59], 1000 / 60);
  EXPECT_EQ(f[63], 0);
  expect_error([&] { padded_frequencies(vocab, "v.pb", 50); },
               {"v.pb", "60 routing ids", "routing_vocab_size = 50"});

  const std::vector<int64_t> z = zipf_frequencies(5, 1.0);
  EXPECT_EQ(z, (std::vector<int64_t>{1000000000000, 500000000000, 333333333333, 250000000000,
                                     200000000000}));
}

}  // namespace
}  // namespace mowe::model
