#include "comm/alltoall.h"

#include "comm/device_copy.h"

namespace mowe::comm {

const char* algorithm_name(AllToAll::Algorithm algorithm) {
  return algorithm == AllToAll::Algorithm::Flat ? "flat" : "hierarchical";
}

AllToAll::AllToAll(Communicator& comm, Algorithm algorithm, int ranks_per_node)
    : comm_(comm), algorithm_(algorithm), nodes_(comm.size()) {
  if (algorithm_ == Algorithm::Flat) return;
  const int size = comm.size();
  MOWE_CHECK(ranks_per_node >= 0, "[comm] hierarchical all-to-all: ranks_per_node {} is negative",
             ranks_per_node);
  local_ = ranks_per_node > 0 ? ranks_per_node : comm.ranks_per_node();
  MOWE_REQUIRE(size % local_ == 0,
               "[comm] hierarchical all-to-all on group '{}': {} ranks cannot "
               "form nodes of {} ranks (parallel.ranks_per_node must divide the world size)",
               comm.name(), size, local_);
  nodes_ = size / local_;
  const int node = comm.rank() / local_, local = comm.rank() % local_;
  intra_ = comm.split(node, local);
  inter_ = comm.split(local, node);
}

CollectiveStats AllToAll::alltoall_counters() const {
  if (algorithm_ == Algorithm::Flat) return comm_.stats()[Collective::AllToAll];
  CollectiveStats sum = intra_->stats()[Collective::AllToAll];
  sum += inter_->stats()[Collective::AllToAll];
  return sum;
}

AllToAll::Plan AllToAll::plan(std::span<const int64_t> send_rows,
                              std::span<const int64_t> recv_rows, Arena& scratch) {
  Plan p;
  plan(send_rows, recv_rows, scratch, p);
  return p;
}

void AllToAll::plan(std::span<const int64_t> send_rows, std::span<const int64_t> recv_rows,
                    Arena& scratch, Plan& p) {
  const int size = comm_.size();
  MOWE_CHECK(
      static_cast<int>(send_rows.size()) == size && static_cast<int>(recv_rows.size()) == size,
      "[comm] all-to-all plan on group '{}': {} send and {} recv counts for {} ranks", comm_.name(),
      send_rows.size(), recv_rows.size(), size);
  p.owner_ = this;
  p.send_total_ = p.recv_total_ = p.mid_total_ = 0;
  p.pack_.clear();
  p.shuffle_.clear();
  p.send_.assign(send_rows.begin(), send_rows.end());
  p.recv_.assign(recv_rows.begin(), recv_rows.end());
  for (int j = 0; j < size; ++j) {
    MOWE_CHECK(send_rows[j] >= 0 && recv_rows[j] >= 0,
               "[comm] all-to-all plan on group '{}': "
               "negative count for rank {}",
               comm_.name(), j);
    p.send_total_ += send_rows[j];
    p.recv_total_ += recv_rows[j];
  }
  // One stage suffices when there is one node, or one rank per node.
  if (algorithm_ == Algorithm::Flat || local_ == 1 || nodes_ == 1) return;
  exchange_counts(p, send_rows, scratch);
}

// Fills the stage counts and chunk lists. x[l * N + m] (rows local peer l sends to the rank of
// node m with this rank's local index) comes from a one-row-per-peer exchange inside the node.
void AllToAll::exchange_counts(Plan& p, std::span<const int64_t> send_rows, Arena& scratch) {
  const int L = local_, N = nodes_;
  std::vector<int64_t>&mine = counts_mine_, &x = counts_peers_;
  mine.assign(static_cast<size_t>(L) * N, 0);
  x.assign(mine.size(), 0);
  for (int l = 0; l < L; ++l) {
    for (int m = 0; m < N; ++m) mine[l * N + m] = send_rows[m * L + l];
  }
  {
    const CollectiveStats before = intra_->stats()[Collective::AllToAll];
    ArenaScope scope(scratch);
    // int64 counts travel bit for bit as pairs of i32: the exchange only moves bytes.
    Tensor out = scratch.alloc({L, 2 * N}, DType::I32), in = scratch.alloc({L, 2 * N}, DType::I32);
    copy_from_host(out, mine.data(), intra_->stream());
    one_row_.assign(L, 1);
    intra_->alltoallv(out, one_row_, in, one_row_);
    copy_to_host(x.data(), in, intra_->stream());
    plan_stats_ += intra_->stats()[Collective::AllToAll] - before;
  }
  p.s1_send_.assign(L, 0);
  p.s1_recv_.assign(L, 0);
  p.s2_send_.assign(N, 0);
  p.s2_recv_.assign(N, 0);
  std::vector<int64_t>& send_off = send_offsets_;
  send_off.assign(L * N + 1, 0);
  for (int r = 0; r < L * N; ++r) send_off[r + 1] = send_off[r] + send_rows[r];
  int64_t packed = 0;
  for (int l = 0; l < L; ++l) {
    for (int m = 0; m < N; ++m) {
      const int64_t rows = send_rows[m * L + l];
      p.s1_send_[l] += rows;
      if (rows > 0) p.pack_.push_back({send_off[m * L + l], packed, rows});
      packed += rows;
      p.s1_recv_[l] += x[l * N + m];
      p.s2_send_[m] += x[l * N + m];
      p.s2_recv_[m] += p.recv_[m * L + l];
    }
  }
  // Stage 1 receives by source peer l, then node m; stage 2 sends by node m, then source l, so
  // that each node receives rows in global source order (m' * L + l).
  std::vector<int64_t>& mid_off = mid_offsets_;
  mid_off.assign(L * N + 1, 0);
  for (int i = 0; i < L * N; ++i) mid_off[i + 1] = mid_off[i] + x[i];
  int64_t shuffled = 0;
  for (int m = 0; m < N; ++m) {
    for (int l = 0; l < L; ++l) {
      const int64_t rows = x[l * N + m];
      if (rows > 0) p.shuffle_.push_back({mid_off[l * N + m], shuffled, rows});
      shuffled += rows;
    }
  }
  p.mid_total_ = mid_off[L * N];
}

void AllToAll::check_plan(const Plan& plan, const Arena& scratch) const {
  MOWE_CHECK(plan.owner_ == this,
             "[comm] all-to-all on group '{}': the plan was made by another "
             "AllToAll",
             comm_.name());
  MOWE_CHECK(scratch.device() == comm_.device(),
             "[comm] all-to-all on group '{}': scratch arena "
             "on {} for a {} communicator",
             comm_.name(), device_name(scratch.device()), device_name(comm_.device()));
}

void AllToAll::copy_chunks(std::span<const Chunk> chunks, bool reverse, const Tensor& from,
                           const Tensor& to) {
  const auto row_bytes = static_cast<int64_t>(from.cols() * dtype_size(from.dtype));
  auto* src = static_cast<const char*>(from.data);
  auto* dst = static_cast<char*>(to.data);
  for (const Chunk& c : chunks) {
    const int64_t s = reverse ? c.dst : c.src, d = reverse ? c.src : c.dst;
    copy_bytes(to.device, intra_->stream(), dst + d * row_bytes, src + s * row_bytes,
               c.rows * row_bytes);
  }
}

void AllToAll::run_stages(const Plan& p, const Tensor& send, const Tensor& recv, Arena& scratch,
                          bool reverse) {
  const Tensor& in = send;  // by rank (forward) or by source (reverse)
  const int64_t E = in.cols();
  MOWE_CHECK(in.rows() == (reverse ? p.recv_total_ : p.send_total_) &&
                 recv.rows() == (reverse ? p.send_total_ : p.recv_total_) && recv.cols() == E &&
                 recv.dtype == in.dtype,
             "[comm] hierarchical all-to-all on group '{}': send {} and recv {} do not match the "
             "plan ({} rows out, {} rows in)",
             comm_.name(), send.str(), recv.str(), reverse ? p.recv_total_ : p.send_total_,
             reverse ? p.send_total_ : p.recv_total_);
  ArenaScope scope(scratch);
  Tensor packed = scratch.alloc({p.send_total_, E}, in.dtype);
  Tensor mid = scratch.alloc({p.mid_total_, E}, in.dtype);
  Tensor shuffled = scratch.alloc({p.mid_total_, E}, in.dtype);
  if (!reverse) {
    copy_chunks(p.pack_, false, send, packed);
    intra_->alltoallv(packed, p.s1_send_, mid, p.s1_recv_);
    copy_chunks(p.shuffle_, false, mid, shuffled);
    inter_->alltoallv(shuffled, p.s2_send_, recv, p.s2_recv_);
  } else {
    inter_->alltoallv(send, p.s2_recv_, shuffled, p.s2_send_);
    copy_chunks(p.shuffle_, true, shuffled, mid);
    intra_->alltoallv(mid, p.s1_recv_, packed, p.s1_send_);
    copy_chunks(p.pack_, true, packed, recv);
  }
}

void AllToAll::run(const Plan& plan, const Tensor& send, const Tensor& recv, Arena& scratch) {
  check_plan(plan, scratch);
  const CollectiveStats before = alltoall_counters();
  if (algorithm_ == Algorithm::Flat) {
    comm_.alltoallv(send, plan.send_, recv, plan.recv_);
  } else if (local_ == 1 || nodes_ == 1) {
    (local_ == 1 ? *inter_ : *intra_).alltoallv(send, plan.send_, recv, plan.recv_);
  } else {
    run_stages(plan, send, recv, scratch, false);
  }
  const CollectiveStats delta = alltoall_counters() - before;
  stats_ += {1, delta.messages, delta.bytes};
}

void AllToAll::run_reverse(const Plan& plan, const Tensor& send, const Tensor& recv,
                           Arena& scratch) {
  check_plan(plan, scratch);
  const CollectiveStats before = alltoall_counters();
  if (algorithm_ == Algorithm::Flat) {
    comm_.alltoallv(send, plan.recv_, recv, plan.send_);
  } else if (local_ == 1 || nodes_ == 1) {
    (local_ == 1 ? *inter_ : *intra_).alltoallv(send, plan.recv_, recv, plan.send_);
  } else {
    run_stages(plan, send, recv, scratch, true);
  }
  const CollectiveStats delta = alltoall_counters() - before;
  stats_ += {1, delta.messages, delta.bytes};
}

}  // namespace mowe::comm
