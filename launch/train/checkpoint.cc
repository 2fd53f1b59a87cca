#include "launch/train/checkpoint.h"

#include <spdlog/spdlog.h>

#include <chrono>
#include <filesystem>

#include "comm/agree.h"
#include "launch/train/checkpoint_files.h"
#include "runtime/checkpoint/directory.h"
#include "runtime/checkpoint/reader.h"
#include "runtime/checkpoint/writer.h"
#include "runtime/config/config.h"
#include "runtime/device.h"

namespace mowe::train {
namespace {

namespace ckpt = mowe::checkpoint;
using Clock = std::chrono::steady_clock;

// One tensor of the checkpoint as this rank holds it.
struct Item {
  std::string name;
  Tensor local;
  const model::Parameter* param;  // whose rows and sharding it follows
};

bool sharded(const model::Parameter& p) {
  return p.sharding.unit_rows > 0;
}

// Parameters in registration order, then optimizer state by name: the same list on every rank.
std::vector<Item> checkpoint_items(Job& job) {
  std::vector<Item> items;
  for (const auto& p : job.parameters().all())
    items.push_back({p->name, p->value.tensor(), p.get()});
  for (const NamedTensor& s : job.optimizer().prepare_state(job.parameters().slots())) {
    const std::string param = s.name.substr(0, s.name.rfind('/'));
    items.push_back({s.name, s.tensor, &job.parameters().get(param)});
  }
  return items;
}

Shape global_shape(const Item& item) {
  if (!sharded(*item.param)) return item.local.shape;
  return item.local.shape.with_dim(0, item.param->sharding.global_shape[0]);
}

ckpt::Layout layout_of(const std::vector<Item>& items) {
  std::vector<ckpt::TensorSpec> specs;
  for (const Item& it : items) {
    const bool experts = sharded(*it.param);
    specs.push_back({.name = it.name,
                     .dtype = it.local.dtype,
                     .shape = global_shape(it),
                     .file = experts ? "experts.bin" : "dense.bin",
                     .chunk_rows = experts ? it.param->sharding.unit_rows : 0});
  }
  return ckpt::Layout::plan(std::move(specs));
}

// Runs of local rows whose global rows are consecutive: [local, local + count) -> [global, ...).
struct RowRun {
  int64_t local, global, count;
};
std::vector<RowRun> row_runs(const model::RowMap& rows, int64_t local_rows) {
  std::vector<RowRun> runs;
  for (int64_t i = 0; i < local_rows; ++i) {
    const int64_t g = rows.global(i);
    if (!runs.empty() && runs.back().global + runs.back().count == g) {
      ++runs.back().count;
    } else {
      runs.push_back({i, g, 1});
    }
  }
  return runs;
}

int64_t row_bytes(const Tensor& t) {
  return t.shape.ndim() == 0 || t.dim(0) == 0 ? static_cast<int64_t>(t.nbytes())
                                              : static_cast<int64_t>(t.nbytes()) / t.dim(0);
}

// A tensor's bytes on the host: its own memory on the CPU; on a device, a download into
// `staging` (reused from tensor to tensor), so files have one format whatever the device.
const char* host_bytes(const Tensor& t, std::vector<char>& staging) {
  if (t.device == Device::CPU) return static_cast<const char*>(t.data);
  staging.resize(t.nbytes());
  download(staging.data(), t);
  return staging.data();
}

void write_items(ckpt::ChunkWriter& writer, const std::vector<Item>& items) {
  std::vector<char> staging;
  for (const Item& it : items) {
    if (!it.param->sharding.writer) continue;
    const char* bytes = host_bytes(it.local, staging);
    if (!sharded(*it.param)) {
      writer.write_tensor(it.name, bytes);
      continue;
    }
    const int64_t unit = it.param->sharding.unit_rows;
    for (const RowRun& run : row_runs(it.param->rows, it.local.dim(0))) {
      MOWE_CHECK(run.global % unit == 0 && run.count % unit == 0,
                 "'{}': rows {}..{} are not whole blocks of {}", it.name, run.global,
                 run.global + run.count, unit);
      writer.write_chunks(it.name, run.global / unit, run.count / unit,
                          bytes + run.local * row_bytes(it.local));
    }
  }
}

// The CRC of every chunk from the rank that wrote it; every chunk written exactly once (checked
// alike on every rank, so a violation is an agreed error).
std::vector<uint32_t> gather_crcs(comm::Communicator& comm, const ckpt::ChunkWriter& writer) {
  const std::vector<uint32_t>& crcs = writer.crcs();
  const std::vector<uint8_t>& written = writer.written();
  const size_t n = crcs.size();
  std::vector<double> sums(2 * n, 0.0);  // CRCs and writer counts: exact in doubles
  for (size_t i = 0; i < n; ++i) {
    if (written[i]) sums[i] = crcs[i], sums[n + i] = 1;
  }
  comm.allreduce(Tensor(sums.data(), DType::F64, Device::CPU, {static_cast<int64_t>(2 * n)}),
                 comm::ReduceOp::Sum);
  std::vector<uint32_t> out(n);
  for (size_t i = 0; i < n; ++i) {
    MOWE_CHECK(sums[n + i] == 1, "checkpoint chunk {} was written by {} ranks, not 1", i,
               sums[n + i]);
    out[i] = static_cast<uint32_t>(sums[i]);
  }
  return out;
}

// What each fingerprint protects, for the refusal message.
const char* fingerprint_meaning(std::string_view name) {
  if (name == kFingerprintRoutingVocab) return "another routing vocabulary (data.routing_vocab)";
  if (name == kFingerprintRoutingTable)
    return "another routing table (frequencies or num_unrouted_ids)";
  return "another bucket layout (model.mowe.buckets)";
}

void check_fingerprints(const Fingerprints& mine, const ckpt::CheckpointManifest& m,
                        const std::string& path) {
  for (const auto& [name, want] : fingerprint_entries(mine)) {
    const uint64_t found = find_fingerprint(m, name).value_or(0);
    if (found != want)
      throw Error(fmt::format(
          "checkpoint {} was written with {}: its {} hash is {:016x}, this job's is {:016x}; "
          "use the files and config it was trained with (to train anew instead, use another "
          "checkpoint_dir)",
          path, fingerprint_meaning(name), name, found, want));
  }
}

// Returns the bytes read into this rank's tensors.
int64_t read_items(const ckpt::CheckpointReader& reader, const std::vector<Item>& items) {
  int64_t bytes = 0;
  std::vector<char> staging;
  for (const Item& it : items) {
    bytes += static_cast<int64_t>(it.local.nbytes());
    if (!reader.layout().find(it.name)) {
      const bool state = it.name.find('/') != std::string::npos;
      throw Error(fmt::format(
          "checkpoint {} has no tensor '{}'{}", reader.path(), it.name,
          state ? ": it was written with another optimizer (training.optimizer) or with frozen "
                  "experts"
                : ": it was written for another model (model.*)"));
    }
    reader.expect(it.name, it.local.dtype, global_shape(it));
    // Read into host memory; a device tensor is then uploaded from there.
    const bool on_host = it.local.device == Device::CPU;
    if (!on_host) staging.resize(it.local.nbytes());
    char* dst = on_host ? static_cast<char*>(it.local.data) : staging.data();
    if (!sharded(*it.param)) {
      reader.read_tensor(it.name, dst);
    } else {
      for (const RowRun& run : row_runs(it.param->rows, it.local.dim(0)))
        reader.read_rows(it.name, run.global, run.count, dst + run.local * row_bytes(it.local));
    }
    if (!on_host) upload(it.local, dst);  // the seam stages the source: reusable at once
  }
  return bytes;
}

// A streaming loader's state holds the streams its rank reads; the checkpoint needs every stream.
// A stream read by several ranks is at the same position on each (the loader reads on to the
// step boundary), so the largest value of each field is the position. Fields travel as doubles:
// offsets and counts stay exact below 2^53.
data::LoaderState all_stream_positions(comm::Communicator& comm, const data::Loader& loader,
                                       data::LoaderState state) {
  if (!loader.streaming()) return state;
  int64_t streams = 0;
  for (const data::StreamPosition& p : state.streams()) streams = std::max(streams, p.stream() + 1);
  double n = static_cast<double>(streams);
  comm.allreduce(Tensor(&n, DType::F64, Device::CPU, {1}), comm::ReduceOp::Max);
  streams = static_cast<int64_t>(n);
  constexpr int kFields = 5;
  std::vector<double> fields(static_cast<size_t>(streams * kFields), -1.0);
  for (const data::StreamPosition& p : state.streams()) {
    double* f = &fields[static_cast<size_t>(p.stream() * kFields)];
    f[0] = static_cast<double>(p.epoch()), f[1] = static_cast<double>(p.file());
    f[2] = static_cast<double>(p.offset()), f[3] = static_cast<double>(p.token());
    f[4] = static_cast<double>(p.chunk());
  }
  comm.allreduce(Tensor(fields.data(), DType::F64, Device::CPU, {streams * kFields}),
                 comm::ReduceOp::Max);
  state.clear_streams();
  for (int64_t s = 0; s < streams; ++s) {
    const double* f = &fields[static_cast<size_t>(s * kFields)];
    MOWE_CHECK(f[0] >= 0, "no rank reads stream {} of {}", s, streams);
    data::StreamPosition* p = state.add_streams();
    p->set_stream(s);
    p->set_epoch(static_cast<int64_t>(f[0])), p->set_file(static_cast<int64_t>(f[1]));
    p->set_offset(static_cast<int64_t>(f[2])), p->set_token(static_cast<int64_t>(f[3]));
    p->set_chunk(static_cast<int64_t>(f[4]));
  }
  return state;
}

// After --resume auto loaded listed[loaded], the newer checkpoints failed to: each is renamed
// out of the checkpoint namespace, so that it is never picked again and retention, which counts
// only loadable names, never removes an intact checkpoint while keeping a damaged one. Only once
// an older checkpoint loaded, so a config that matches none of them (another routing
// vocabulary, say) sets nothing aside. A failed rename stops the job: retention would count the
// damaged one. Collective (rank 0 renames).
void set_aside_damaged(comm::Communicator& comm, const std::string& dir,
                       const std::vector<ckpt::CheckpointInfo>& listed, size_t loaded) {
  comm::run_agreed(comm, [&] {
    if (comm.rank() != 0) return;
    for (size_t i = 0; i < loaded && i < listed.size(); ++i) {
      std::string moved;
      try {
        moved = ckpt::set_aside_damaged(dir, listed[i]);
      } catch (const Error& e) {
        throw UserError(fmt::format(
            "cannot set aside the unreadable checkpoint {} ({}): move it out of {} by hand, "
            "then resume again",
            listed[i].path, e.what(), dir));
      }
      spdlog::warn(
          "[checkpoint] set aside {} as {}: it cannot be read, so it is never resumed from, "
          "never counted by training.keep_checkpoints and never removed; delete it once "
          "inspected",
          listed[i].path, moved);
    }
  });
}

}  // namespace

std::string save_checkpoint(Job& job, const TrainState& given) {
  const auto start = Clock::now();
  comm::Communicator& comm = job.comm();
  TrainState state = given;
  state.loader = all_stream_positions(comm, job.train_loader(), given.loader);
  const std::string dir = job.config().training().checkpoint_dir();
  const std::vector<Item> items = checkpoint_items(job);
  const ckpt::Layout layout = layout_of(items);
  std::string tmp;
  comm::run_agreed(comm, [&] {
    if (comm.rank() == 0) tmp = ckpt::begin_checkpoint(dir, state.step, layout);
  });
  tmp = fmt::format("{}/.tmp-{}", dir, ckpt::checkpoint_name(state.step));
  ckpt::ChunkWriter writer(tmp, layout);
  comm::run_agreed(comm, [&] {
    write_items(writer, items);
    writer.sync();
    write_rank_file(tmp, comm.rank(), comm.size(), state.to_proto());
  });
  std::vector<uint32_t> crcs;
  comm::run_agreed(comm, [&] { crcs = gather_crcs(comm, writer); });
  const std::string path = fmt::format("{}/{}", dir, ckpt::checkpoint_name(state.step));
  comm::run_agreed(comm, [&] {
    if (comm.rank() != 0) return;
    commit_training_checkpoint(dir, tmp, layout, crcs,
                               training_manifest(state.to_proto(), config::to_text(job.config()),
                                                 job.fingerprints(), comm.size()));
  });
  // The new checkpoint is complete: failing to tidy up is a warning, never a stop.
  if (comm.rank() == 0) {
    try {
      for (const std::string& later : ckpt::remove_later_checkpoints(dir, state.step))
        spdlog::warn(
            "[checkpoint] removed {}: a later step of the history this run abandoned "
            "when it resumed from an older checkpoint",
            later);
      for (const std::string& old :
           ckpt::remove_old_checkpoints(dir, job.config().training().keep_checkpoints()))
        spdlog::info("[checkpoint] removed {}", old);
    } catch (const std::exception& e) {
      spdlog::warn("[checkpoint] could not remove old checkpoints in {}: {}", dir, e.what());
    }
  }
  int64_t bytes = 0;
  for (const auto& [file, size] : layout.file_sizes()) bytes += size;
  const double secs = std::chrono::duration<double>(Clock::now() - start).count();
  spdlog::info("[checkpoint] step {} written to {} ({:.1f} MB in {:.2f} s, {:.2f} GB/s)",
               state.step, path, bytes / 1e6, secs, bytes / 1e9 / std::max(secs, 1e-9));
  return path;
}

TrainState load_checkpoint(Job& job, const std::string& path) {
  const auto start = Clock::now();
  comm::Communicator& comm = job.comm();
  TrainState state;
  int64_t bytes = 0;
  comm::run_agreed(comm, [&] {
    const ckpt::CheckpointReader reader(path);
    const ckpt::CheckpointManifest& m = reader.manifest();
    check_fingerprints(job.fingerprints(), m, path);
    const std::optional<TrainStateProto> saved = manifest_train_state(m);
    if (!saved || !saved->has_loader())
      throw Error(fmt::format("checkpoint {}: the manifest holds no training state", path));
    // Each rank's own record (rank r of the new job checks rank r mod N of the old one) must
    // agree with the manifest: they are written by different processes.
    const int written_by = comm.rank() % std::max(1, m.world_size());
    const std::string file = rank_file_path(path, written_by);
    const std::optional<TrainStateProto> own = read_rank_file(file);
    if (!own || !agrees_with_manifest(*own, *saved))
      throw Error(fmt::format("checkpoint {}: {} disagrees with the manifest's training state",
                              path, file));
    bytes = read_items(reader, checkpoint_items(job));
    state = TrainState::from_proto(*saved);
    job.train_loader().restore(state.loader);
  });
  const double secs = std::chrono::duration<double>(Clock::now() - start).count();
  double total = static_cast<double>(bytes);  // what all ranks read together
  comm.allreduce(Tensor(&total, DType::F64, Device::CPU, {1}), comm::ReduceOp::Sum);
  spdlog::info(
      "[checkpoint] resumed from {} at step {} ({:.1f} MB read by {} ranks in {:.2f} s, "
      "{:.2f} GB/s)",
      path, state.step, total / 1e6, comm.size(), secs, total / 1e9 / std::max(secs, 1e-9));
  return state;
}

int64_t load_parameters(Job& job, const std::string& path) {
  comm::Communicator& comm = job.comm();
  int64_t step = 0;
  comm::run_agreed(comm, [&] {
    const ckpt::CheckpointReader reader(path);
    check_fingerprints(job.fingerprints(), reader.manifest(), path);
    std::vector<Item> params;
    for (const auto& p : job.parameters().all())
      params.push_back({p->name, p->value.tensor(), p.get()});
    read_items(reader, params);
    step = reader.manifest().step();
  });
  spdlog::info("[checkpoint] parameters of {} (step {}) loaded", path, step);
  return step;
}

std::string find_init_checkpoint(Job& job, const std::string& path) {
  std::string found;
  comm::run_agreed(job.comm(), [&] {
    if (job.comm().rank() != 0) return;
    if (std::filesystem::exists(std::filesystem::path(path) / "manifest.pb")) {
      found = path;
      return;
    }
    const std::vector<ckpt::CheckpointInfo> listed = std::filesystem::is_directory(path)
                                                         ? ckpt::list_checkpoints(path)
                                                         : std::vector<ckpt::CheckpointInfo>{};
    if (listed.empty())
      throw Error(fmt::format(
          "training.init_from '{}' is not a checkpoint (no manifest.pb) nor a checkpoint "
          "directory holding one: point it at a step-N directory or at the pre-training run's "
          "training.checkpoint_dir",
          path));
    found = listed.front().path;
  });
  return comm::broadcast_string(job.comm(), 0, found);
}

void refuse_unasked_fresh_start(const std::string& checkpoint_dir, comm::Communicator& comm) {
  comm::run_agreed(comm, [&] {
    if (comm.rank() != 0) return;
    const std::vector<ckpt::CheckpointInfo> found = ckpt::list_checkpoints(checkpoint_dir);
    MOWE_REQUIRE(found.empty(),
                 "training.checkpoint_dir '{}' holds checkpoints up to step {} ({}) and no "
                 "--resume was given: pass --resume auto to continue from them, or --resume none "
                 "to start over and replace them (or set another training.checkpoint_dir)",
                 checkpoint_dir, found.front().step, found.front().path);
  });
}

std::optional<TrainState> resume(Job& job, const std::string& how) {
  if (how == "none") return std::nullopt;
  if (how != "auto") return load_checkpoint(job, how);
  comm::Communicator& comm = job.comm();
  const std::string dir = job.config().training().checkpoint_dir();
  // Rank 0 lists, every rank tries the same candidates in the same order (listings of a shared
  // directory may differ between nodes for a moment).
  std::vector<ckpt::CheckpointInfo> listed;  // rank 0's
  std::string listing;
  comm::run_agreed(comm, [&] {
    if (comm.rank() != 0) return;
    std::vector<std::string> incomplete;
    listed = ckpt::list_checkpoints(dir, &incomplete);
    for (const std::string& path : incomplete)
      spdlog::warn(
          "[checkpoint] --resume auto: {} has no manifest.pb, so it is not a complete checkpoint "
          "and is skipped; move it away or delete it",
          path);
    for (const ckpt::CheckpointInfo& c : listed) listing += c.path + "\n";
  });
  listing = comm::broadcast_string(comm, 0, listing);
  std::vector<std::string> found;
  for (size_t begin = 0, end; (end = listing.find('\n', begin)) != std::string::npos;
       begin = end + 1)
    found.push_back(listing.substr(begin, end - begin));
  if (found.empty()) {
    spdlog::info("[checkpoint] --resume auto: no checkpoint in {}, starting from step 0", dir);
    return std::nullopt;
  }
  std::string first_error;
  for (size_t i = 0; i < found.size(); ++i) {
    try {
      TrainState state = load_checkpoint(job, found[i]);
      set_aside_damaged(comm, dir, listed, i);
      return state;
    } catch (const comm::AgreedError& e) {
      if (comm.rank() == 0)  // agreed: said once
        spdlog::warn("[checkpoint] cannot resume from {}: {}; trying the previous checkpoint",
                     found[i], e.what());
      if (first_error.empty()) first_error = e.what();
    }
  }
  throw comm::AgreedError(
      fmt::format("--resume auto: none of the {} checkpoints in {} can be loaded; "
                  "the newest failed with: {}",
                  found.size(), dir, first_error));
}

}  // namespace mowe::train
