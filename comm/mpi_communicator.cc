#include "comm/mpi_communicator.h"

#include <algorithm>
#include <climits>
#include <cstring>

#include "comm/device_copy.h"
#include "comm/mpi_check.h"
#include "comm/ring_allreduce.h"

namespace mowe::comm {
namespace {

constexpr int kAllToAllTag = 7301;
// Ring allreduces in flight at once take tags kRingTag + (call mod kRingTags), so their messages
// never match each other's (every rank numbers its allreduces alike). Below MPI's least tag
// upper bound, 32767, and clear of the all-to-all's tag.
constexpr int kRingTag = 8192, kRingTags = 16384;
// Buffers from this size go around the ring (given at least one element per rank); smaller ones,
// where the ring's 2 (p - 1) steps of latency would dominate, take MPI_Iallreduce.
constexpr int64_t kRingMinBytes = int64_t{256} << 10;

MPI_Op mpi_op(ReduceOp op) {
  switch (op) {
    case ReduceOp::Sum:
      return MPI_SUM;
    case ReduceOp::Max:
      return MPI_MAX;
    case ReduceOp::Min:
      return MPI_MIN;
  }
  return MPI_OP_NULL;
}

// A tensor's bytes in host memory: the tensor itself on CPU; on CUDA (the fallback) a host copy,
// written back to the device by copy_out().
class HostView {
 public:
  HostView(const Tensor& t, bool copy_in, void* stream) : tensor_(t), stream_(stream) {
    if (t.device == Device::CPU) return;
    storage_.resize(t.nbytes());
    if (copy_in) copy_to_host(storage_.data(), t, stream);
  }
  void* data() { return tensor_.device == Device::CPU ? tensor_.data : storage_.data(); }
  char* bytes() { return static_cast<char*>(data()); }
  void copy_out() {
    if (tensor_.device != Device::CPU) copy_from_host(tensor_, storage_.data(), stream_);
  }

 private:
  Tensor tensor_;
  void* stream_;
  std::vector<std::byte> storage_;
};

// One non-blocking collective on one MPI request. Ended requests go back to their
// communicator's pool (release) and are reused by the next collective.
class MpiRequest final : public Request::Impl {
 public:
  MpiRequest(MPI_Request request, WaitInfo info, HostView view, bool copy_out)
      : request_(request), info_(info), view_(std::move(view)), copy_out_(copy_out) {}

  bool test() override {
    int flag = 0;
    if (ring_active_) {
      flag = ring_.test();
      ring_active_ = !flag;
    } else {
      MPI_CHECK(MPI_Test(&request_, &flag, MPI_STATUS_IGNORE));
    }
    if (flag && copy_out_) view_.copy_out();
    return flag != 0;
  }
  void wait() override {
    watch(info_, [this] { return test(); });
  }
  void release() override;

  void reset(MPI_Request request, WaitInfo info, HostView view, bool copy_out) {
    request_ = request;
    info_ = info;
    view_ = std::move(view);
    copy_out_ = copy_out;
    ring_active_ = false;
  }
  // The request of a ring allreduce over the view's bytes (reset first, with MPI_REQUEST_NULL).
  RingAllreduce& start_ring() {
    ring_active_ = true;
    return ring_;
  }
  void* data() { return view_.data(); }
  std::shared_ptr<RequestPool> pool;  // where release() puts it; null: deleted

 private:
  MPI_Request request_;
  WaitInfo info_;
  HostView view_;
  bool copy_out_;
  RingAllreduce ring_;  // keeps its segment buffer from one allreduce to the next
  bool ring_active_ = false;
};

}  // namespace

struct RequestPool {
  std::vector<MpiRequest*> spare;
  ~RequestPool() {
    for (MpiRequest* r : spare) delete r;
  }
};

namespace {

void MpiRequest::release() {
  if (!pool) {
    delete this;
    return;
  }
  view_ = HostView(Tensor(), false, nullptr);  // drop a device staging copy now
  std::shared_ptr<RequestPool> keep = std::move(pool);
  keep->spare.push_back(this);
}

}  // namespace

int mpi_count(int64_t n, const char* op, const std::string& group) {
  MOWE_CHECK(n >= 0 && n <= INT_MAX,
             "[comm] {} on group '{}': {} elements in one message "
             "exceed MPI's int count limit ({}); split the exchange into smaller parts",
             op, group, n, INT_MAX);
  return static_cast<int>(n);
}

MPI_Datatype mpi_type(DType dtype) {
  switch (dtype) {
    case DType::F32:
      return MPI_FLOAT;
    case DType::F64:
      return MPI_DOUBLE;
    case DType::I32:
      return MPI_INT32_T;
    case DType::BF16:
      return MPI_UINT16_T;  // moved, never reduced
  }
  return MPI_DATATYPE_NULL;
}

MpiCommunicator::MpiCommunicator(MPI_Comm comm, Device device, CommOptions options)
    : Communicator(std::move(options)), device_(device) {
  MPI_CHECK(MPI_Comm_dup(comm, &comm_));
  MPI_CHECK(MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN));
  MPI_CHECK(MPI_Comm_rank(comm_, &rank_));
  MPI_CHECK(MPI_Comm_size(comm_, &size_));
}

MpiCommunicator::~MpiCommunicator() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized && comm_ != MPI_COMM_NULL) MPI_Comm_free(&comm_);
}

WaitInfo MpiCommunicator::wait_info(Collective c, int64_t call, int64_t bytes) const {
  return {collective_name(c), call, bytes, &options_.name, rank_, size_, options_.timeout_seconds,
          static_cast<int>(c)};
}

void MpiCommunicator::wait_all(std::vector<MPI_Request>& requests, const WaitInfo& info) {
  if (requests.empty()) return;
  watch(info, [&] {
    int flag = 0;
    MPI_CHECK(MPI_Testall(static_cast<int>(requests.size()), requests.data(), &flag,
                          MPI_STATUSES_IGNORE));
    return flag != 0;
  });
}

void MpiCommunicator::reserve_requests(int n) {
  if (!request_pool_) request_pool_ = std::make_shared<RequestPool>();
  std::vector<MpiRequest*>& spare = request_pool_->spare;
  spare.reserve(spare.size() + static_cast<size_t>(std::max(n, 0)));
  for (int i = static_cast<int>(spare.size()); i < n; ++i)
    spare.push_back(
        new MpiRequest(MPI_REQUEST_NULL, {}, HostView(Tensor(), false, nullptr), false));
}

Request MpiCommunicator::start_allreduce(const Tensor& inout, ReduceOp op) {
  check_tensor("allreduce", "inout", inout);
  MOWE_CHECK(inout.dtype != DType::BF16,
             "[comm] allreduce on group '{}': {} cannot be reduced "
             "(f32, f64 and i32 can)",
             name(), inout.str());
  const int count = mpi_count(inout.numel(), "allreduce", name());
  const auto bytes = static_cast<int64_t>(inout.nbytes());
  const int64_t call = count_call(Collective::Allreduce, bytes);
  // One rank: the result is the input. A device tensor then needs no trip through host memory.
  if (size_ == 1 && inout.device != Device::CPU) return Request();
  HostView view(inout, true, stream());
  const bool ring = size_ >= 2 && bytes >= kRingMinBytes && count >= size_;
  MPI_Request request = MPI_REQUEST_NULL;
  if (!ring) {
    MPI_CHECK(MPI_Iallreduce(MPI_IN_PLACE, view.data(), count, mpi_type(inout.dtype), mpi_op(op),
                             comm_, &request));
  }
  if (!request_pool_) request_pool_ = std::make_shared<RequestPool>();
  std::vector<MpiRequest*>& spare = request_pool_->spare;
  MpiRequest* r = nullptr;
  const WaitInfo info = wait_info(Collective::Allreduce, call, bytes);
  if (spare.empty()) {
    r = new MpiRequest(request, info, std::move(view), true);
    spare.reserve(spare.capacity() + 1);  // room to take it back without growing later
  } else {
    r = spare.back();
    spare.pop_back();
    r->reset(request, info, std::move(view), true);
  }
  r->pool = request_pool_;
  if (ring) {
    r->start_ring().start(comm_, rank_, size_,
                          kRingTag + static_cast<int>(ring_calls_++ % kRingTags), r->data(), count,
                          mpi_type(inout.dtype), dtype_size(inout.dtype), mpi_op(op));
  }
  return Request(Request::ImplPtr(r));
}

void MpiCommunicator::alltoallv(const Tensor& send, std::span<const int64_t> send_rows,
                                const Tensor& recv, std::span<const int64_t> recv_rows) {
  const int64_t row_elems = check_alltoallv(send, send_rows, recv, recv_rows);
  MOWE_CHECK(send_rows[rank_] == recv_rows[rank_],
             "[comm] alltoallv on group '{}': rank {} "
             "sends {} rows to itself but expects {}",
             name(), rank_, send_rows[rank_], recv_rows[rank_]);
  // Every count is checked before anything is posted, so a failing call leaves no message behind.
  std::vector<int>&send_count = send_count_, &recv_count = recv_count_;
  send_count.resize(size_);
  recv_count.resize(size_);
  for (int j = 0; j < size_; ++j) {
    send_count[j] = mpi_count(send_rows[j] * row_elems, "alltoallv", name());
    recv_count[j] = mpi_count(recv_rows[j] * row_elems, "alltoallv", name());
  }
  const auto row_bytes = static_cast<int64_t>(row_elems * dtype_size(send.dtype));
  const int64_t call = count_alltoallv(send_rows, row_bytes);
  // One rank sends only to itself: a device tensor is copied where it is, not through the host.
  if (size_ == 1 && send.device != Device::CPU) {
    copy_bytes(send.device, stream(), recv.data, send.data,
               static_cast<size_t>(send_rows[0] * row_bytes));
    return;
  }
  HostView sv(send, true, stream()), rv(recv, false, stream());
  std::vector<int64_t>&send_off = send_offset_, &recv_off = recv_offset_;
  send_off.assign(size_ + 1, 0);
  recv_off.assign(size_ + 1, 0);
  for (int j = 0; j < size_; ++j) {
    send_off[j + 1] = send_off[j] + send_rows[j] * row_bytes;
    recv_off[j + 1] = recv_off[j] + recv_rows[j] * row_bytes;
  }
  const MPI_Datatype type = mpi_type(send.dtype);
  requests_.clear();
  // Receives first, so that sends can land in place; peers in a rotated order, so that rank r
  // starts with r+1 instead of every rank starting with rank 0.
  for (int k = 1; k < size_; ++k) {
    const int src = (rank_ - k + size_) % size_;
    if (recv_count[src] == 0) continue;
    MPI_CHECK(MPI_Irecv(rv.bytes() + recv_off[src], recv_count[src], type, src, kAllToAllTag, comm_,
                        &requests_.emplace_back()));
  }
  for (int k = 1; k < size_; ++k) {
    const int dst = (rank_ + k) % size_;
    if (send_count[dst] == 0) continue;
    MPI_CHECK(MPI_Isend(sv.bytes() + send_off[dst], send_count[dst], type, dst, kAllToAllTag, comm_,
                        &requests_.emplace_back()));
  }
  if (send_rows[rank_] > 0) {
    std::memcpy(rv.bytes() + recv_off[rank_], sv.bytes() + send_off[rank_],
                send_rows[rank_] * row_bytes);
  }
  wait_all(requests_, wait_info(Collective::AllToAll, call, send.nbytes()));
  rv.copy_out();
}

void MpiCommunicator::broadcast(const Tensor& inout, int root) {
  check_tensor("broadcast", "inout", inout);
  check_root("broadcast", root);
  const int count = mpi_count(inout.numel(), "broadcast", name());
  const auto bytes = static_cast<int64_t>(inout.nbytes());
  const int64_t call = count_call(Collective::Broadcast, bytes);
  HostView view(inout, rank_ == root, stream());
  MPI_Request request = MPI_REQUEST_NULL;
  MPI_CHECK(MPI_Ibcast(view.data(), count, mpi_type(inout.dtype), root, comm_, &request));
  MpiRequest(request, wait_info(Collective::Broadcast, call, bytes), std::move(view), rank_ != root)
      .wait();
}

void MpiCommunicator::barrier() {
  const int64_t call = count_call(Collective::Barrier, 0);
  MPI_Request request = MPI_REQUEST_NULL;
  MPI_CHECK(MPI_Ibarrier(comm_, &request));
  MpiRequest(request, wait_info(Collective::Barrier, call, 0), HostView(Tensor(), false, nullptr),
             false)
      .wait();
}

std::unique_ptr<Communicator> MpiCommunicator::split(int color, int key) {
  MPI_Comm part = MPI_COMM_NULL;
  MPI_CHECK(MPI_Comm_split(comm_, color < 0 ? MPI_UNDEFINED : color, key, &part));
  if (part == MPI_COMM_NULL) return nullptr;
  auto child = std::make_unique<MpiCommunicator>(part, device_, child_options(color));
  MPI_CHECK(MPI_Comm_free(&part));
  return child;
}

std::unique_ptr<Communicator> MpiCommunicator::for_device(Device device, CommOptions options) {
  return make_communicator(comm_, device, std::move(options));
}

int MpiCommunicator::ranks_per_node() {
  return mpi_ranks_per_node(comm_);
}

int mpi_ranks_per_node(MPI_Comm comm) {
  int rank = 0, size = 1;
  MPI_CHECK(MPI_Comm_rank(comm, &rank));
  MPI_CHECK(MPI_Comm_size(comm, &size));
  MPI_Comm node = MPI_COMM_NULL;
  MPI_CHECK(MPI_Comm_split_type(comm, MPI_COMM_TYPE_SHARED, rank, MPI_INFO_NULL, &node));
  int local_rank = 0, local_size = 1, first = rank, last = rank;
  MPI_CHECK(MPI_Comm_rank(node, &local_rank));
  MPI_CHECK(MPI_Comm_size(node, &local_size));
  MPI_CHECK(MPI_Allreduce(&rank, &first, 1, MPI_INT, MPI_MIN, node));
  MPI_CHECK(MPI_Allreduce(&rank, &last, 1, MPI_INT, MPI_MAX, node));
  MPI_CHECK(MPI_Comm_free(&node));
  // Node by node: every node holds the same number of ranks, numbered consecutively.
  int mine[2] = {local_size, -local_size}, all[2] = {0, 0};
  MPI_CHECK(MPI_Allreduce(mine, all, 2, MPI_INT, MPI_MIN, comm));
  const int bad_here = (last - first + 1 != local_size || first % local_size != 0) ? 1 : 0;
  int bad = 0;
  MPI_CHECK(MPI_Allreduce(&bad_here, &bad, 1, MPI_INT, MPI_MAX, comm));
  MOWE_REQUIRE(all[0] == -all[1],
               "[comm] nodes hold between {} and {} ranks: the hierarchical "
               "all-to-all needs the same number on every node (or set parallel.ranks_per_node)",
               all[0], -all[1]);
  MOWE_REQUIRE(bad == 0,
               "[comm] ranks are not numbered node by node (rank = node * ranks_per_node "
               "+ local index): start mpirun with --map-by slot, or set parallel.ranks_per_node");
  return local_size;
}

}  // namespace mowe::comm
