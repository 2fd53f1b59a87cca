// mowe_convert's library on a small checkpoint written with the checkpoint library (dense and
// chunked expert tensors, optimizer state, f32/f64/i32, random bit patterns including NaNs):
// export then import gives byte-identical data files, rank files and manifest, as one file and as
// shards; the name mapping; import refuses renamed, missing, unexpected and reshaped tensors,
// missing metadata, weights-only exports and an existing output; verify names the file, tensor,
// chunk and byte range of every damaged chunk, a truncated file and a missing rank file.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "launch/convert/checkpoint_tools.h"
#include "launch/convert/names.h"
#include "launch/convert/safetensors_io.h"
#include "runtime/checkpoint/directory.h"
#include "runtime/checkpoint/framed_file.h"
#include "runtime/checkpoint/layout.h"
#include "runtime/checkpoint/reader.h"
#include "runtime/checkpoint/writer.h"
#include "runtime/files.h"
#include "runtime/safetensors/safetensors.h"
#include "tests/util/expect_error.h"

namespace mowe::convert {
namespace {

namespace fs = std::filesystem;
namespace ckpt = mowe::checkpoint;
namespace st = mowe::safetensors;
using mowe::testing::expect_error;

std::string slurp(const fs::path& p) {
  return read_file(p.string(), "test file");
}

void overwrite(const fs::path& p, const std::string& bytes) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

class ConvertTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = fs::temp_directory_path() /
            fmt::format("convert_test_{}_{}", ::getpid(),
                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(root_);
    fs::create_directories(root_);
    ckpt_ = write_checkpoint();
  }
  void TearDown() override { fs::remove_all(root_); }

  // The tensors of the synthetic checkpoint, in layout order: the trainer's kinds of names.
  static std::vector<ckpt::TensorSpec> specs() {
    return {
        {"shared.embedding", DType::F32, {6, 4}, "dense.bin", 0},
        {"decoder.lm_head", DType::F32, {4, 6}, "dense.bin", 0},
        {"encoder.block0.self_attention.q", DType::F32, {4, 4}, "dense.bin", 0},
        {"encoder.block0.mowe.norm", DType::F32, {4}, "dense.bin", 0},
        {"mowe.bucket0.wi", DType::F32, {5, 4, 3}, "experts.bin", 2},
        {"mowe.bucket0.wo", DType::F32, {5, 3, 4}, "experts.bin", 2},
        {"extra.counts", DType::I32, {3}, "dense.bin", 0},
        {"extra.wide", DType::F64, {2, 2}, "dense.bin", 0},
        {"decoder.lm_head/m", DType::F32, {4, 6}, "dense.bin", 0},
        {"mowe.bucket0.wi/v", DType::F32, {5, 4, 3}, "experts.bin", 2},
    };
  }

  // Writes <root>/ckpt/step-00000007 as the trainer would (2 ranks), with random bytes.
  std::string write_checkpoint() {
    const std::string dir = (root_ / "ckpt").string();
    const ckpt::Layout layout = ckpt::Layout::plan(specs());
    const std::string tmp = ckpt::begin_checkpoint(dir, 7, layout);
    ckpt::ChunkWriter writer(tmp, layout);
    std::mt19937 rng(42);
    for (const auto& e : layout.entries()) {
      std::string bytes(static_cast<size_t>(e.bytes()), '\0');
      for (char& c : bytes) c = static_cast<char>(rng());
      writer.write_tensor(e.spec.name, bytes.data());
    }
    writer.sync();
    train::TrainStateProto state;
    state.set_step(7);
    state.set_dropout_seed(3);
    state.mutable_loader()->set_step(7);
    state.mutable_loader()->set_next_example(28);
    for (int rank = 0; rank < 2; ++rank) {
      train::TrainStateProto own = state;
      own.set_rank(rank);
      own.set_world_size(2);
      ckpt::write_framed_file(tmp + "/" + rank_file_name(rank), kRankMagic, kRankVersion,
                              own.SerializeAsString());
    }
    ckpt::CheckpointManifest m;
    m.set_step(7);
    m.set_config("model { d_model: 4 }\n");
    auto* f = m.add_fingerprints();
    f->set_name("routing_vocab");
    f->set_value(0x0123456789abcdefULL);
    m.set_world_size(2);
    m.set_user_state(state.SerializeAsString());
    layout.fill_manifest(&m, writer.crcs());
    ckpt::commit_checkpoint(dir, tmp, 7, m);
    return dir + "/" + ckpt::checkpoint_name(7);
  }

  ExportOptions options(const std::string& out, uint64_t shard_size = 0) const {
    ExportOptions o;
    o.out = (root_ / out).string();
    o.shard_size = shard_size;
    o.routing_table = false;  // the synthetic model has no MoWE routing vocabulary
    return o;
  }

  // Copies a safetensors file with edits to its tensors (spec and bytes) and metadata.
  struct Item {
    st::TensorSpec spec;
    std::string bytes;
  };
  std::string rewrite(
      const std::string& from, const std::string& name,
      const std::function<void(std::vector<Item>&, std::map<std::string, std::string>&)>& edit) {
    const st::Reader r(from);
    std::vector<Item> items;
    for (const st::TensorInfo& t : r.header().tensors) {
      Item it{{t.name, t.dtype, t.shape}, std::string(t.bytes(), '\0')};
      r.read(t, 0, it.bytes.data(), t.bytes());
      items.push_back(std::move(it));
    }
    std::map<std::string, std::string> meta = r.header().metadata;
    edit(items, meta);
    std::vector<st::TensorSpec> specs;
    for (const Item& it : items) specs.push_back(it.spec);
    const std::string to = (root_ / name).string();
    st::Writer w(to, specs, meta);
    for (const Item& it : items) w.append(it.bytes.data(), it.bytes.size());
    w.finish();
    return to;
  }

  void expect_same_checkpoint(const std::string& a, const std::string& b) {
    for (const char* f :
         {"dense.bin", "experts.bin", "rank-00000.pb", "rank-00001.pb", "manifest.pb"})
      EXPECT_EQ(slurp(fs::path(a) / f), slurp(fs::path(b) / f)) << f << " differs";
  }

  fs::path root_;
  std::string ckpt_;
};

TEST_F(ConvertTest, ExportImportIsByteIdentical) {
  const ExportResult one = export_safetensors(ckpt_, options("one.safetensors"));
  EXPECT_EQ(one.files.size(), 1u);
  EXPECT_EQ(one.tensors, 10);
  const ImportResult back =
      import_safetensors(one.files[0], (root_ / "back/step-00000007").string());
  EXPECT_EQ(back.step, 7);
  EXPECT_EQ(back.tensors, 10);
  expect_same_checkpoint(ckpt_, back.dir);
  const VerifyReport r = verify(back.dir, 10);
  EXPECT_EQ(r.num_problems, 0) << (r.problems.empty() ? "" : r.problems[0]);
  EXPECT_EQ(r.tensors, 10);
  EXPECT_FALSE(fs::exists(back.dir + ".tmp-import"));

  // Shards of at most 200 bytes: one tensor or more per shard, and the index.
  const ExportResult sharded = export_safetensors(ckpt_, options("shards", 200));
  ASSERT_GT(sharded.files.size(), 3u);
  EXPECT_EQ(fs::path(sharded.files.back()).filename(), "model.safetensors.index.json");
  EXPECT_EQ(fs::path(sharded.files.front()).filename(),
            st::shard_file_name(1, static_cast<int>(sharded.files.size()) - 1));
  const st::Index index = st::parse_index(slurp(sharded.files.back()), sharded.files.back());
  EXPECT_EQ(index.total_size, sharded.bytes);
  EXPECT_EQ(index.weight_map.size(), 10u);
  EXPECT_EQ(index.weight_map.at("lm_head.weight"), fs::path(sharded.files[0]).filename().string());
  const ImportResult back2 =
      import_safetensors(sharded.files.back(), (root_ / "back2/step-00000007").string());
  expect_same_checkpoint(ckpt_, back2.dir);

  // An export into the same directory with another shard count would mix shards: refused.
  expect_error([&] { export_safetensors(ckpt_, options("shards", 100000)); },
               {"shards", "from another export", "remove the old shards"});
}

TEST_F(ConvertTest, NamesLayoutsAndMetadata) {
  const ExportResult one = export_safetensors(ckpt_, options("one.safetensors"));
  const st::Reader r(one.files[0]);
  const ckpt::CheckpointReader c(ckpt_);
  // shared.embedding: same layout; lm_head: [4, 6] stored as [6, 4] transposed; experts and
  // optimizer state keep their names and layouts; the MoWE block's norm sits where T5's FFN
  // norm is.
  for (const auto& [ours, theirs, transposed] :
       {std::tuple<std::string, std::string, bool>{"shared.embedding", "shared.weight", false},
        {"decoder.lm_head", "lm_head.weight", true},
        {"encoder.block0.self_attention.q", "encoder.block.0.layer.0.SelfAttention.q.weight", true},
        {"encoder.block0.mowe.norm", "encoder.block.0.layer.1.layer_norm.weight", false},
        {"mowe.bucket0.wi", "mowe.bucket0.wi", false},
        {"extra.counts", "extra.counts", false},
        {"decoder.lm_head/m", "optimizer/decoder.lm_head/m", false},
        {"mowe.bucket0.wi/v", "optimizer/mowe.bucket0.wi/v", false}}) {
    SCOPED_TRACE(ours);
    const ckpt::Layout::Entry& e = c.layout().at(ours);
    std::string want(static_cast<size_t>(e.bytes()), '\0');
    c.read_tensor(ours, want.data());
    const st::TensorInfo* t = r.find(theirs);
    ASSERT_NE(t, nullptr);
    std::string got(t->bytes(), '\0');
    r.read(*t, 0, got.data(), t->bytes());
    if (!transposed) {
      EXPECT_EQ(got, want);
      continue;
    }
    const int64_t rows = e.spec.shape[0], cols = e.spec.shape[1];
    EXPECT_EQ(t->shape, (std::vector<int64_t>{cols, rows}));
    for (int64_t i = 0; i < rows; ++i)
      for (int64_t j = 0; j < cols; ++j)
        EXPECT_EQ(got.substr(static_cast<size_t>((j * rows + i) * 4), 4),
                  want.substr(static_cast<size_t>((i * cols + j) * 4), 4));
  }
  EXPECT_EQ(r.find("extra.wide")->dtype, st::DType::F64);
  EXPECT_EQ(r.find("extra.counts")->dtype, st::DType::I32);
  const auto& meta = r.header().metadata;
  EXPECT_EQ(meta.at("format"), "pt");
  EXPECT_EQ(meta.at(kMetaStep), "7");
  EXPECT_EQ(meta.at(kMetaConfig), "model { d_model: 4 }\n");
  EXPECT_EQ(meta.at(kMetaFingerprints), "routing_vocab=0123456789abcdef\n");
  EXPECT_EQ(meta.at(kMetaWorldSize), "2");
}

TEST_F(ConvertTest, NameMapping) {
  const auto hf = [](const std::string& n) { return export_name(n).name; };
  EXPECT_EQ(hf("encoder.relative_attention_bias"),
            "encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight");
  EXPECT_EQ(hf("decoder.final_norm"), "decoder.final_layer_norm.weight");
  EXPECT_EQ(hf("decoder.block11.cross_attention.o"),
            "decoder.block.11.layer.1.EncDecAttention.o.weight");
  EXPECT_EQ(hf("decoder.block3.cross_attention.norm"), "decoder.block.3.layer.1.layer_norm.weight");
  EXPECT_EQ(hf("decoder.block3.ffn.wi_1"), "decoder.block.3.layer.2.DenseReluDense.wi_1.weight");
  EXPECT_EQ(hf("decoder.block3.ffn.norm"), "decoder.block.3.layer.2.layer_norm.weight");
  EXPECT_EQ(hf("decoder.block3.mowe.norm"), "decoder.block.3.layer.2.layer_norm.weight");
  EXPECT_EQ(hf("encoder.block2.ffn.wo"), "encoder.block.2.layer.1.DenseReluDense.wo.weight");
  EXPECT_TRUE(export_name("encoder.block2.ffn.wo").transpose);
  EXPECT_FALSE(export_name("encoder.block2.ffn.norm").transpose);
  // Unshared experts, and anything unknown, keep their names.
  EXPECT_EQ(hf("encoder.block5.mowe.bucket1.wi_gate"), "encoder.block5.mowe.bucket1.wi_gate");
  EXPECT_EQ(hf("encoder.cross_attention.q"), "encoder.cross_attention.q");
  EXPECT_EQ(hf("encoder.block01.ffn.wo"), "encoder.block01.ffn.wo");
  EXPECT_EQ(hf("encoder.block2.ffn.wo/v_row"), "optimizer/encoder.block2.ffn.wo/v_row");
  EXPECT_EQ(component("encoder.block5.mowe.bucket12.wo/m"), "experts bucket 12");
  EXPECT_EQ(component("decoder.lm_head/v"), "lm_head");
  EXPECT_EQ(component("decoder.block0.ffn.wo"), "decoder");
  EXPECT_EQ(optimizer_slot("a.b/v_col"), "v_col");
}

TEST_F(ConvertTest, ImportRefusesWrongTensors) {
  const std::string good = export_safetensors(ckpt_, options("good.safetensors")).files[0];
  const std::string out = (root_ / "out/step-00000007").string();
  using Items = std::vector<Item>;
  using Meta = std::map<std::string, std::string>;

  const std::string renamed = rewrite(good, "renamed.safetensors", [](Items& items, Meta&) {
    for (Item& it : items)
      if (it.spec.name == "shared.weight") it.spec.name = "shared.weights";
  });
  expect_error(
      [&] { import_safetensors(renamed, out); },
      {"renamed.safetensors", "no tensor 'shared.weight'", "the checkpoint's 'shared.embedding'"});

  const std::string extra = rewrite(good, "extra.safetensors", [](Items& items, Meta&) {
    items.push_back({{"encoder.embed_tokens.weight", st::DType::F32, {1}}, std::string(4, 'x')});
  });
  expect_error([&] { import_safetensors(extra, out); },
               {"extra.safetensors", "unexpected tensor 'encoder.embed_tokens.weight'"});

  const std::string dropped = rewrite(good, "dropped.safetensors", [](Items& items, Meta&) {
    std::erase_if(items,
                  [](const Item& it) { return it.spec.name == "optimizer/decoder.lm_head/m"; });
  });
  expect_error([&] { import_safetensors(dropped, out); },
               {"dropped.safetensors", "no tensor 'optimizer/decoder.lm_head/m'"});

  const std::string reshaped = rewrite(good, "reshaped.safetensors", [](Items& items, Meta&) {
    for (Item& it : items)
      if (it.spec.name == "lm_head.weight") it.spec.shape = {4, 6};  // not transposed
  });
  expect_error([&] { import_safetensors(reshaped, out); },
               {"reshaped.safetensors", "tensor 'lm_head.weight' is F32 [4, 6]",
                "the checkpoint's 'decoder.lm_head' needs F32 [6, 4]"});

  const std::string retyped = rewrite(good, "retyped.safetensors", [](Items& items, Meta&) {
    for (Item& it : items)
      if (it.spec.name == "extra.counts") it.spec.dtype = st::DType::F32;
  });
  expect_error([&] { import_safetensors(retyped, out); },
               {"retyped.safetensors", "tensor 'extra.counts' is F32 [3]", "needs I32 [3]"});

  const std::string bare =
      rewrite(good, "bare.safetensors", [](Items&, Meta& meta) { meta.clear(); });
  expect_error([&] { import_safetensors(bare, out); },
               {"bare.safetensors", "no __metadata__ entry 'mowe.export_version'",
                "written by mowe_convert export"});

  const std::string bad_table = rewrite(good, "table.safetensors", [](Items&, Meta& meta) {
    meta[kMetaTensors] = "shared.embedding\tshared.weight\tf32\t6,4\tdense.bin\tNaN\t6\t96\t0\n";
  });
  expect_error([&] { import_safetensors(bad_table, out); },
               {"table.safetensors", "mowe.tensors line 1", "not an integer"});

  const std::string overlapping = rewrite(good, "overlap.safetensors", [](Items&, Meta& meta) {
    // Two tensors at the same offset: the layout check refuses the recorded geometry.
    std::string& t = meta[kMetaTensors];
    const size_t second = t.find('\n') + 1;
    const size_t end = t.find('\n', second);
    std::vector<std::string> f;
    std::stringstream ss(t.substr(second, end - second));
    for (std::string x; std::getline(ss, x, '\t');) f.push_back(x);
    f[5] = "0";
    std::string line;
    for (size_t i = 0; i < f.size(); ++i) line += (i ? "\t" : "") + f[i];
    t = t.substr(0, second) + line + t.substr(end);
  });
  expect_error([&] { import_safetensors(overlapping, out); },
               {"overlap.safetensors", "do not describe a valid checkpoint", "overlap"});

  EXPECT_FALSE(fs::exists(out));
  EXPECT_FALSE(fs::exists(out + ".tmp-import"));
  fs::create_directories(out);
  expect_error([&] { import_safetensors(good, out); }, {out, "exists", "choose another --out"});
}

TEST_F(ConvertTest, WeightsOnlyExportHasNoOptimizerStateAndIsNotImported) {
  ExportOptions o = options("w.safetensors");
  o.weights_only = true;
  const ExportResult r = export_safetensors(ckpt_, o);
  EXPECT_EQ(r.tensors, 8);
  const st::Reader reader(r.files[0]);
  for (const st::TensorInfo& t : reader.header().tensors)
    EXPECT_EQ(t.name.rfind("optimizer/", 0), std::string::npos) << t.name;
  expect_error([&] { import_safetensors(r.files[0], (root_ / "w").string()); },
               {"w.safetensors", "exported with --weights-only", "export again without"});
}

TEST_F(ConvertTest, ShardsOfDifferentExportsAreRefused) {
  const ExportResult a = export_safetensors(ckpt_, options("a", 200));
  ExportOptions o = options("b", 200);
  const ExportResult b = export_safetensors(ckpt_, o);
  // Same tensors, other metadata: an edited shard of b replaces a's.
  rewrite(
      b.files[1], "b/edited.safetensors",
      [](std::vector<Item>&, std::map<std::string, std::string>& meta) { meta[kMetaStep] = "8"; });
  fs::rename(root_ / "b/edited.safetensors", a.files[1]);
  expect_error([&] { import_safetensors(a.files.back(), (root_ / "x").string()); },
               {"come from different exports", "mowe.step"});
  // An index that puts a tensor in the wrong shard.
  st::Index index = st::parse_index(slurp(b.files.back()), b.files.back());
  index.weight_map["shared.weight"] = fs::path(b.files[2]).filename().string();
  overwrite(b.files.back(), st::index_json(index));
  expect_error([&] { import_safetensors(b.files.back(), (root_ / "y").string()); },
               {"puts tensor 'shared.weight' in model-00003-of-", "which does not hold it"});
}

TEST_F(ConvertTest, VerifyNamesEveryDamagedChunk) {
  VerifyReport ok = verify(ckpt_, 20);
  EXPECT_EQ(ok.num_problems, 0);
  EXPECT_EQ(ok.tensors, 10);

  const ckpt::CheckpointReader reader(ckpt_);
  const auto& lm = reader.layout().at("decoder.lm_head");
  const auto& wi = reader.layout().at("mowe.bucket0.wi");
  auto flip = [](const fs::path& p, int64_t at) {
    std::string bytes = slurp(p);
    bytes[static_cast<size_t>(at)] ^= 0x10;
    overwrite(p, bytes);
  };
  flip(fs::path(ckpt_) / "dense.bin", lm.offset + 5);
  flip(fs::path(ckpt_) / "experts.bin", wi.chunk_offset(1) + 3);  // expert rows 2..3
  VerifyReport r = verify(ckpt_, 20);
  ASSERT_EQ(r.num_problems, 2);
  EXPECT_EQ(r.tensors, 8);
  EXPECT_NE(r.problems[0].find(fmt::format(
                "dense.bin: tensor 'decoder.lm_head' chunk 0 (rows 0..3, bytes {}..{}) is damaged",
                lm.offset, lm.offset + 96)),
            std::string::npos)
      << r.problems[0];
  EXPECT_NE(r.problems[1].find(fmt::format(
                "experts.bin: tensor 'mowe.bucket0.wi' chunk 1 (rows 2..3, bytes {}..{}) is "
                "damaged: CRC32C",
                wi.chunk_offset(1), wi.chunk_offset(1) + 96)),
            std::string::npos)
      << r.problems[1];
  // Bounded: one line kept, both counted.
  EXPECT_EQ(verify(ckpt_, 1).problems.size(), 1u);

  // A truncated data file, a missing rank file: each named, everything else still checked.
  const fs::path experts = fs::path(ckpt_) / "experts.bin";
  fs::resize_file(experts, static_cast<uintmax_t>(wi.chunk_offset(2)));
  fs::remove(fs::path(ckpt_) / "rank-00001.pb");
  r = verify(ckpt_, 20);
  std::string all;
  for (const std::string& p : r.problems) all += p + "\n";
  EXPECT_NE(
      all.find("experts.bin: " + std::to_string(wi.chunk_offset(2)) + " bytes, the manifest says"),
      std::string::npos)
      << all;
  EXPECT_NE(all.find("tensor 'mowe.bucket0.wi' chunk 2 (rows 4..4"), std::string::npos) << all;
  EXPECT_NE(all.find("lies beyond the end of the file"), std::string::npos) << all;
  EXPECT_NE(all.find("rank-00001.pb: missing file"), std::string::npos) << all;

  // A damaged manifest: one problem, nothing else can be checked.
  flip(fs::path(ckpt_) / "manifest.pb", 30);
  r = verify(ckpt_, 20);
  ASSERT_EQ(r.num_problems, 1);
  EXPECT_NE(r.problems[0].find("manifest.pb: damaged"), std::string::npos) << r.problems[0];
}

TEST_F(ConvertTest, InspectAndDump) {
  std::ostringstream out;
  inspect(read_manifest(ckpt_), out);
  const std::string text = out.str();
  for (const char* part :
       {"step 7, format version 1", "by a job of 2 ranks", "routing_vocab 0123456789abcdef",
        "training state: step 7, dropout seed 3, loader at step 7 example 28",
        "embedding                              24", "experts bucket 0", "optimizer state",
        "mowe.bucket0.wi/v", "3 chunks of 2 rows"})
    EXPECT_NE(text.find(part), std::string::npos) << "'" << part << "' not in:\n" << text;
  std::ostringstream values;
  dump(ckpt_, "extra.counts", -1, values);
  std::istringstream lines(values.str());
  std::string header;
  std::getline(lines, header);
  EXPECT_EQ(header, "extra.counts i32 [3]");
  const ckpt::CheckpointReader reader(ckpt_);
  int32_t want[3];
  reader.read_tensor("extra.counts", want);
  for (int i = 0; i < 3; ++i) {
    int64_t v;
    lines >> v;
    EXPECT_EQ(v, want[i]);
  }
  expect_error([&] { dump(ckpt_, "nope", -1, values); }, {"has no tensor 'nope'"});
}

}  // namespace
}  // namespace mowe::convert
