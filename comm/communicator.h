// Communicator: the one interface through which ranks exchange tensors (after Marian's
// communicator: an interface, an NCCL implementation, a plain MPI fallback, a single-process
// fake, and a factory that falls back with a logged warning).
//
// Every collective is waited for by a watchdog: one that does not complete within
// CommOptions::timeout_seconds logs "[comm] <op> (#<call>, <bytes> bytes) on rank R of N ... did
// not complete within T s: a peer rank is dead or stuck" and aborts the whole job, because a
// collective whose peer is gone can never be cancelled from one side alone.
//
// Tensors are views on the communicator's device(); sizes always come from the host (the
// dispatch plan), never from device data.
#pragma once

#include <mpi.h>

#include <array>
#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "runtime/tensor.h"

namespace mowe::comm {

enum class ReduceOp : uint8_t { Sum, Max, Min };
const char* reduce_op_name(ReduceOp op);

// The collectives counted separately in CommStats.
enum class Collective : uint8_t { Allreduce, AllToAll, Broadcast, Barrier };
inline constexpr int kNumCollectives = 4;
const char* collective_name(Collective c);  // "allreduce", "alltoallv", "broadcast", "barrier"

// Wall time this process has spent blocked waiting for collectives of kind c, over every
// communicator (see watchdog.h): the share of a step that communication did not hide.
double blocked_seconds(Collective c);

// Counters of one collective on one rank. A message is one non-empty point-to-point transfer to
// another rank (sends to self are local copies). For all-to-all the implementation does the
// transfers itself, so messages and bytes are exact. Allreduce and broadcast are left to the
// library's own algorithm: they count calls and the payload bytes (tensor size) when the group
// has more than one rank, and no messages.
struct CollectiveStats {
  int64_t calls = 0;
  int64_t messages = 0;
  int64_t bytes = 0;

  CollectiveStats& operator+=(const CollectiveStats& o);
  CollectiveStats operator-(const CollectiveStats& o) const;
  bool operator==(const CollectiveStats& o) const = default;
};

struct CommStats {
  std::array<CollectiveStats, kNumCollectives> by_op{};
  const CollectiveStats& operator[](Collective c) const { return by_op[static_cast<int>(c)]; }
  CollectiveStats& operator[](Collective c) { return by_op[static_cast<int>(c)]; }
  CollectiveStats total() const;
};

struct CommOptions {
  // A collective still pending after this long aborts the job (config
  // parallel.collective_timeout_s); 0 waits forever.
  double timeout_seconds = 300;
  std::string name = "world";  // names the group in messages; split() appends "/<color>"
  // NCCL only: the rank's GPU (-1: the current device) and the stream collectives run on. Pass
  // the compute stream (Context::stream) so collectives are ordered after the ops producing
  // their inputs; null makes the communicator create its own stream.
  int cuda_device = -1;
  void* cuda_stream = nullptr;
  // CUDA requested where NCCL cannot serve it: warn and use MPI through host memory (true), or
  // throw (false).
  bool allow_fallback = true;
};

// A pending non-blocking collective. Its tensor must stay alive and untouched, and its
// communicator alive, until wait() returns. Destroying a pending request waits for it.
class Request {
 public:
  class Impl {
   public:
    virtual ~Impl() = default;
    virtual bool test() = 0;  // true once complete; drives progress (MPI progresses in calls)
    virtual void wait() = 0;  // blocks under the watchdog
    // Called instead of delete when the request ends: a communicator may keep the object for
    // its next collective, so that steady-state steps allocate nothing.
    virtual void release() { delete this; }
  };
  struct Release {
    void operator()(Impl* impl) const { impl->release(); }
  };
  using ImplPtr = std::unique_ptr<Impl, Release>;

  Request() = default;  // an already complete request
  explicit Request(std::unique_ptr<Impl> impl) : impl_(impl.release()) {}
  explicit Request(ImplPtr impl) : impl_(std::move(impl)) {}
  Request(Request&& other) noexcept = default;
  Request& operator=(Request&& other) noexcept;
  Request(const Request&) = delete;
  Request& operator=(const Request&) = delete;
  ~Request();

  bool done() const { return impl_ == nullptr; }
  bool test();
  void wait();

 private:
  void finish_quietly() noexcept;

  ImplPtr impl_;
};

class Communicator {
 public:
  virtual ~Communicator() = default;

  virtual int rank() const = 0;
  virtual int size() const = 0;
  virtual Device device() const = 0;        // where the tensors passed in must live
  virtual const char* backend() const = 0;  // "mpi", "nccl", "single"
  const std::string& name() const { return options_.name; }
  const CommOptions& options() const { return options_; }
  // cudaStream_t the collectives are queued on (NCCL), else null.
  virtual void* stream() const { return nullptr; }

  // In place, element-wise over all ranks; f32, f64, i32.
  void allreduce(const Tensor& inout, ReduceOp op) { start_allreduce(inout, op).wait(); }
  virtual Request start_allreduce(const Tensor& inout, ReduceOp op) = 0;

  // send [rows, E] holds, in rank order, send_rows[j] rows for rank j; recv [rows, E] receives,
  // in rank order, recv_rows[j] rows from rank j. Counts are rows per peer, known beforehand on
  // both sides (recv_rows[j] here equals send_rows[rank()] on rank j). Any dtype.
  virtual void alltoallv(const Tensor& send, std::span<const int64_t> send_rows, const Tensor& recv,
                         std::span<const int64_t> recv_rows) = 0;
  virtual void broadcast(const Tensor& inout, int root) = 0;
  virtual void barrier() = 0;

  // Ranks with the same color form a group, ordered by key (then by rank); a negative color
  // takes no part and gets null. Collective over this communicator.
  virtual std::unique_ptr<Communicator> split(int color, int key) = 0;
  // Ranks per node as the system placed them (MPI_COMM_TYPE_SHARED). Collective. Throws when
  // nodes hold different numbers of ranks or ranks are not numbered node by node.
  virtual int ranks_per_node() = 0;
  // A communicator over the same ranks, in the same order, for tensors on `device` (the data
  // communicator of a device job beside this control one): make_communicator's choice of NCCL
  // or MPI for that device. Collective. Only host (MPI, single-rank) communicators make one.
  virtual std::unique_ptr<Communicator> for_device(Device device, CommOptions options);
  // Prepares for n non-blocking collectives in flight at once, so that starting them allocates
  // nothing (steady-state training steps). A hint: more still work.
  virtual void reserve_requests(int /*n*/) {}

  const CommStats& stats() const { return stats_; }
  void reset_stats() { stats_ = {}; }

 protected:
  explicit Communicator(CommOptions options) : options_(std::move(options)) {}
  CommOptions child_options(int color) const;

  // Argument checks shared by the implementations; they throw Error naming op and group.
  void check_tensor(const char* op, const char* what, const Tensor& t) const;
  // Returns the row width E (elements) after checking shapes, counts and dtypes.
  int64_t check_alltoallv(const Tensor& send, std::span<const int64_t> send_rows,
                          const Tensor& recv, std::span<const int64_t> recv_rows) const;
  void check_root(const char* op, int root) const;
  // Counts one call; for alltoallv also one message per non-empty send to another rank.
  int64_t count_call(Collective c, int64_t payload_bytes);
  int64_t count_alltoallv(std::span<const int64_t> send_rows, int64_t row_bytes);

  CommOptions options_;
  CommStats stats_;
};

// One process, no MPI: allreduce and broadcast leave the data as it is, alltoallv copies send
// to recv. For tools and tests that run without mpiexec; any device.
class SingleRankCommunicator final : public Communicator {
 public:
  explicit SingleRankCommunicator(Device device = Device::CPU, CommOptions options = {});

  int rank() const override { return 0; }
  int size() const override { return 1; }
  Device device() const override { return device_; }
  const char* backend() const override { return "single"; }
  void* stream() const override { return options_.cuda_stream; }

  Request start_allreduce(const Tensor& inout, ReduceOp op) override;
  void alltoallv(const Tensor& send, std::span<const int64_t> send_rows, const Tensor& recv,
                 std::span<const int64_t> recv_rows) override;
  void broadcast(const Tensor& inout, int root) override;
  void barrier() override;
  std::unique_ptr<Communicator> split(int color, int key) override;
  std::unique_ptr<Communicator> for_device(Device device, CommOptions options) override;
  int ranks_per_node() override { return 1; }

 private:
  Device device_;
};

// The communicator for tensors on `device` over the ranks of `comm` (collective): MPI for CPU;
// NCCL for CUDA when the build has it and every rank sees a GPU, otherwise (allow_fallback) MPI
// through host memory with a warning. MPI must be initialised.
std::unique_ptr<Communicator> make_communicator(MPI_Comm comm, Device device,
                                                CommOptions options = {});

}  // namespace mowe::comm
