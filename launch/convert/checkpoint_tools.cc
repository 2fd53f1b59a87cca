#include "launch/convert/checkpoint_tools.h"

#include <fcntl.h>

#include <algorithm>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <map>
#include <optional>

#include "launch/convert/names.h"
#include "launch/train/config_rules.h"
#include "model/expert_form.h"
#include "model/mowe_layers.h"
#include "runtime/check.h"
#include "runtime/checkpoint/crc32c.h"
#include "runtime/checkpoint/framed_file.h"
#include "runtime/checkpoint/posix_io.h"
#include "runtime/checkpoint/reader.h"
#include "runtime/config/config.h"

namespace mowe::convert {
namespace {

namespace ckpt = mowe::checkpoint;

// Reads are bounded by this many bytes at a time, whatever the size of a chunk.
constexpr int64_t kPieceBytes = int64_t{4} << 20;

std::string shape_str(const Shape& s) {
  return s.str();
}

std::string utc_time(int64_t unix_s) {
  if (unix_s <= 0) return "unknown time";
  const std::time_t t = static_cast<std::time_t>(unix_s);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S UTC", &tm);
  return buf;
}

std::string chunk_rows_text(const ckpt::Layout::Entry& e, int64_t c) {
  const int64_t first = e.chunk_first_row(c);
  return fmt::format("rows {}..{}", first, first + e.chunk_num_rows(c) - 1);
}

// The config summary of inspect: the fields that size the model and the run.
void print_config_summary(const config::Config& c, std::ostream& out) {
  const auto& m = c.model();
  out << fmt::format(
      "  model: d_model {}, {} heads x d_kv {}, d_ff {}, {} encoder + {} decoder blocks, "
      "vocabulary {}, {} relative-position buckets (max distance {})\n",
      m.d_model(), m.num_heads(), m.d_kv(), m.d_ff(), m.num_encoder_layers(),
      m.num_decoder_layers(), m.vocab_size(), m.relative_attention_num_buckets(),
      m.relative_attention_max_distance());
  const auto& w = m.mowe();
  if (model::has_mowe_layers(w)) {
    out << fmt::format(
        "  mowe: encoder blocks [{}], decoder blocks [{}], routing vocabulary {} ({} unrouted), "
        "experts {}{}, default expert form {}\n",
        fmt::join(w.encoder_layers(), ", "), fmt::join(w.decoder_layers(), ", "),
        w.routing_vocab_size(), w.num_unrouted_ids(),
        w.share_expert_parameters() ? "shared by the MoWE layers" : "per MoWE layer",
        w.freeze_experts() ? " (frozen)" : "", config::Activation_Name(w.expert_activation()));
    for (int b = 0; b < w.buckets_size(); ++b) {
      const auto& k = w.buckets(b);
      out << fmt::format(
          "    bucket {}: {} routing ids, {} blocks x {} experts = {} experts of d_ff {}, {}\n", b,
          k.num_routing_ids() == 0 ? std::string("all remaining")
                                   : std::to_string(k.num_routing_ids()),
          k.num_blocks(), k.experts_per_block(), int64_t{k.num_blocks()} * k.experts_per_block(),
          k.expert_d_ff(), config::Activation_Name(model::bucket_activation(w, b)));
    }
  } else {
    out << "  mowe: none (a dense T5.1.1)\n";
  }
  const auto& t = c.training();
  out << fmt::format(
      "  training: optimizer {}, {} steps, global batch {}, learning rate {} ({}), seed {}\n",
      config::TrainingConfig::Optimizer_Name(t.optimizer()), t.steps(), t.global_batch_size(),
      t.learning_rate(), config::TrainingConfig::LrSchedule_Name(t.lr_schedule()), t.seed());
  out << fmt::format("  data: corpus {}, tokenizer {}, routing vocabulary {}\n",
                     config::DataConfig::Corpus_Name(c.data().corpus()), c.data().tokenizer_model(),
                     c.data().routing_vocab());
}

// Values of a tensor's row bytes, printed exactly.
void print_values(const char* data, int64_t count, DType dtype, std::ostream& out) {
  for (int64_t i = 0; i < count; ++i) {
    switch (dtype) {
      case DType::F32: {
        float v;
        std::memcpy(&v, data + 4 * i, 4);
        out << fmt::format("{:.9g}\n", v);
        break;
      }
      case DType::F64: {
        double v;
        std::memcpy(&v, data + 8 * i, 8);
        out << fmt::format("{:.17g}\n", v);
        break;
      }
      case DType::I32: {
        int32_t v;
        std::memcpy(&v, data + 4 * i, 4);
        out << v << "\n";
        break;
      }
      case DType::BF16: {
        uint16_t h;
        std::memcpy(&h, data + 2 * i, 2);
        const uint32_t bits = uint32_t{h} << 16;
        float v;
        std::memcpy(&v, &bits, 4);
        out << fmt::format("{:.9g}\n", v);
        break;
      }
    }
  }
}

}  // namespace

std::string grouped(int64_t n) {
  std::string digits = std::to_string(n < 0 ? -n : n), out;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return n < 0 ? "-" + out : out;
}

ManifestView read_manifest(const std::string& dir) {
  ManifestView v;
  v.dir = dir;
  v.manifest_path = dir + "/" + ckpt::kManifestFile;
  std::error_code ec;
  if (!std::filesystem::is_directory(dir, ec))
    throw Error(fmt::format("{}: {}", dir,
                            std::filesystem::exists(dir, ec)
                                ? "not a directory (a checkpoint is a directory step-NNNNNNNN)"
                                : "no such checkpoint directory"));
  const std::string payload =
      ckpt::read_framed_file(v.manifest_path, ckpt::kManifestMagic, ckpt::kFormatVersion);
  if (!v.manifest.ParseFromString(payload))
    throw Error(
        fmt::format("{}: damaged: the payload is not a checkpoint manifest", v.manifest_path));
  if (v.manifest.format_version() > ckpt::kFormatVersion)
    throw Error(fmt::format("{}: format version {}, this build reads up to {}: use a newer mowe",
                            v.manifest_path, v.manifest.format_version(), ckpt::kFormatVersion));
  try {
    v.layout = ckpt::Layout::from_manifest(v.manifest);
  } catch (const Error& e) {
    throw Error(fmt::format("{}: {}", v.manifest_path, e.what()));
  }
  return v;
}

train::TrainStateProto train_state(const ManifestView& view) {
  std::optional<train::TrainStateProto> s = train::manifest_train_state(view.manifest);
  if (!s)
    throw Error(
        fmt::format("{}: the manifest holds no training state (user_state)", view.manifest_path));
  return *std::move(s);
}

void inspect(const ManifestView& view, std::ostream& out) {
  const ckpt::CheckpointManifest& m = view.manifest;
  out << fmt::format("checkpoint {}\n", view.dir);
  out << fmt::format("  step {}, format version {}, written {} by a job of {} rank{}\n", m.step(),
                     m.format_version(), utc_time(m.created_unix_s()), m.world_size(),
                     m.world_size() == 1 ? "" : "s");
  std::string fps;
  for (const auto& f : m.fingerprints())
    fps += fmt::format("{}{} {:016x}", fps.empty() ? "" : ", ", f.name(), f.value());
  out << "  fingerprints: " << (fps.empty() ? "none (a model without MoWE layers)" : fps) << "\n";
  try {
    const train::TrainStateProto s = train_state(view);
    out << fmt::format(
        "  training state: step {}, dropout seed {}, loader at step {} example {} (stream "
        "{:016x})\n",
        s.step(), s.dropout_seed(), s.loader().step(), s.loader().next_example(),
        s.loader().stream_hash());
  } catch (const Error& e) {
    out << "  training state: " << e.what() << "\n";
  }
  std::string files;
  for (const auto& f : m.files())
    files += fmt::format("{}{} ({} bytes)", files.empty() ? "" : ", ", f.name(), grouped(f.size()));
  out << fmt::format("  files: {}, {} .. {}\n", files, train::rank_file_name(0),
                     train::rank_file_name(std::max(0, m.world_size() - 1)));

  out << fmt::format(
      "config ({} bytes of text; print it whole with: mowe_convert inspect {} "
      "--config):\n",
      m.config().size(), view.dir);
  try {
    print_config_summary(train::load_config_text(m.config(), view.manifest_path + " (config)"),
                         out);
  } catch (const std::exception& e) {
    out << "  this build cannot read it: " << e.what() << "\n";
  }

  // Parameter counts per component, then optimizer state per slot.
  std::vector<std::string> order;
  std::map<std::string, int64_t> params, states_by_component;
  std::map<std::string, int64_t> slots;
  int64_t param_total = 0, state_total = 0;
  for (const auto& e : view.layout.entries()) {
    const int64_t n = e.spec.shape.numel();
    const std::string comp = component(e.spec.name);
    const std::string slot = optimizer_slot(e.spec.name);
    if (slot.empty()) {
      if (!params.count(comp)) order.push_back(comp);
      params[comp] += n;
      param_total += n;
    } else {
      slots[slot] += n;
      states_by_component[comp] += n;
      state_total += n;
    }
  }
  std::stable_sort(order.begin(), order.end(), [](const std::string& a, const std::string& b) {
    auto rank = [](const std::string& c) {
      if (c == "embedding") return 0;
      if (c == "lm_head") return 1;
      if (c == "encoder") return 2;
      if (c == "decoder") return 3;
      if (c.rfind("experts", 0) == 0) return 4;
      return 5;
    };
    return rank(a) < rank(b);
  });
  out << "parameters (scalars):\n";
  for (const std::string& c : order)
    out << fmt::format("  {:<22} {:>18}\n",
                       c + (c == "encoder" || c == "decoder" ? " (dense)" : ""),
                       grouped(params[c]));
  out << fmt::format("  {:<22} {:>18}\n", "total", grouped(param_total));
  if (state_total > 0) {
    out << "optimizer state (scalars, not in the counts above):\n";
    for (const auto& [slot, n] : slots) out << fmt::format("  {:<22} {:>18}\n", slot, grouped(n));
    out << fmt::format("  {:<22} {:>18}\n", "total", grouped(state_total));
  } else {
    out << "optimizer state: none\n";
  }

  int64_t bytes = 0;
  for (const auto& e : view.layout.entries()) bytes += e.bytes();
  out << fmt::format("tensors ({}, {} bytes; global shapes):\n", view.layout.entries().size(),
                     grouped(bytes));
  size_t width = 4;
  for (const auto& e : view.layout.entries()) width = std::max(width, e.spec.name.size());
  for (const auto& e : view.layout.entries())
    out << fmt::format("  {:<{}}  {:<4} {:<18} {:>14} bytes  {} at {}, {}\n", e.spec.name, width,
                       dtype_name(e.spec.dtype), shape_str(e.spec.shape), grouped(e.bytes()),
                       e.spec.file, e.offset,
                       e.num_chunks == 1
                           ? std::string("1 chunk")
                           : fmt::format("{} chunks of {} rows", e.num_chunks, e.spec.chunk_rows));
}

VerifyReport verify(const std::string& dir, size_t max_problems) {
  VerifyReport r;
  auto problem = [&](std::string text) {
    ++r.num_problems;
    if (r.problems.size() < max_problems) r.problems.push_back(std::move(text));
  };
  ManifestView view;
  try {
    view = read_manifest(dir);
  } catch (const Error& e) {
    problem(e.what());
    return r;  // without a manifest nothing else can be checked
  }
  // Data files: present, of the recorded size. A short file is still checked up to its end.
  std::map<std::string, ckpt::PosixFile> files;
  std::map<std::string, int64_t> actual_size;
  for (const auto& [name, size] : view.layout.file_sizes()) {
    const std::string path = dir + "/" + name;
    std::error_code ec;
    if (!std::filesystem::exists(path, ec)) {
      problem(fmt::format("{}: missing (the manifest lists it with {} bytes)", path, size));
      continue;
    }
    try {
      ckpt::PosixFile f(path, O_RDONLY);
      const int64_t got = f.size();
      if (got != size)
        problem(fmt::format("{}: {} bytes, the manifest says {}: the file is {}", path, got, size,
                            got < size ? "truncated" : "damaged (bytes appended)"));
      actual_size[name] = got;
      files.emplace(name, std::move(f));
    } catch (const Error& e) {
      problem(e.what());
    }
  }
  std::vector<char> buffer(static_cast<size_t>(kPieceBytes));
  for (size_t i = 0; i < view.layout.entries().size(); ++i) {
    const ckpt::Layout::Entry& e = view.layout.entries()[i];
    const std::string path = dir + "/" + e.spec.file;
    auto f = files.find(e.spec.file);
    if (f == files.end()) continue;  // reported above
    bool intact = true;
    for (int64_t c = 0; c < e.num_chunks; ++c) {
      const int64_t begin = e.chunk_offset(c), bytes = e.chunk_bytes(c);
      const uint32_t want =
          view.manifest.tensors(static_cast<int>(i)).chunk_crc32c(static_cast<int>(c));
      if (begin + bytes > actual_size[e.spec.file]) {
        problem(fmt::format(
            "{}: tensor '{}' chunk {} ({}, bytes {}..{}) lies beyond the end of the file ({} "
            "bytes)",
            path, e.spec.name, c, chunk_rows_text(e, c), begin, begin + bytes,
            actual_size[e.spec.file]));
        intact = false;
        continue;
      }
      uint32_t crc = 0;
      try {
        for (int64_t done = 0; done < bytes; done += kPieceBytes) {
          const int64_t piece = std::min(kPieceBytes, bytes - done);
          f->second.pread_exact(buffer.data(), static_cast<size_t>(piece), begin + done);
          crc = ckpt::crc32c(buffer.data(), static_cast<size_t>(piece), crc);
        }
      } catch (const Error& err) {
        problem(fmt::format("{}: tensor '{}' chunk {}: {}", path, e.spec.name, c, err.what()));
        intact = false;
        continue;
      }
      if (crc != want) {
        problem(fmt::format(
            "{}: tensor '{}' chunk {} ({}, bytes {}..{}) is damaged: CRC32C {:#010x}, the "
            "manifest says {:#010x}",
            path, e.spec.name, c, chunk_rows_text(e, c), begin, begin + bytes, crc, want));
        intact = false;
        continue;
      }
      r.bytes += bytes;
    }
    if (intact) ++r.tensors;
  }
  // The training state and every rank's own copy of it (a resume at any world size reads one).
  train::TrainStateProto state;
  try {
    state = train_state(view);
    if (state.step() != view.manifest.step())
      problem(fmt::format("{}: the training state is at step {}, the manifest at step {}",
                          view.manifest_path, state.step(), view.manifest.step()));
  } catch (const Error& e) {
    problem(e.what());
  }
  for (int rank = 0; rank < std::max(1, view.manifest.world_size()); ++rank) {
    const std::string path = train::rank_file_path(dir, rank);
    try {
      const std::optional<train::TrainStateProto> own = train::read_rank_file(path);
      if (!own) throw Error(fmt::format("{}: damaged: the payload is not a training state", path));
      if (!train::agrees_with_manifest(*own, state))
        throw Error(fmt::format(
            "{}: disagrees with the manifest's training state (step {} vs {}): a resume "
            "would refuse this checkpoint",
            path, own->step(), state.step()));
    } catch (const Error& e) {
      problem(e.what());
    }
  }
  return r;
}

void dump(const std::string& dir, const std::string& tensor, int64_t limit, std::ostream& out) {
  const ckpt::CheckpointReader reader(dir);
  const ckpt::Layout::Entry* e = reader.layout().find(tensor);
  if (!e)
    throw Error(
        fmt::format("checkpoint {} has no tensor '{}' (mowe_convert inspect {} lists "
                    "them)",
                    dir, tensor, dir));
  out << fmt::format("{} {} {}\n", e->spec.name, dtype_name(e->spec.dtype), e->spec.shape.str());
  const int64_t elem = static_cast<int64_t>(dtype_size(e->spec.dtype));
  int64_t left = limit < 0 ? e->spec.shape.numel() : std::min(limit, e->spec.shape.numel());
  std::vector<char> buffer;
  // Whole chunks at a time (each is CRC-checked when read), so memory is one chunk at most.
  for (int64_t c = 0; c < e->num_chunks && left > 0; ++c) {
    const int64_t rows = e->chunk_num_rows(c);
    buffer.resize(static_cast<size_t>(e->chunk_bytes(c)));
    reader.read_rows(tensor, e->chunk_first_row(c), rows, buffer.data());
    const int64_t n = std::min(left, e->chunk_bytes(c) / std::max<int64_t>(elem, 1));
    print_values(buffer.data(), n, e->spec.dtype, out);
    left -= n;
  }
}

}  // namespace mowe::convert
