// The all-to-all of the MoWE dispatch and combine: rank to rank (block to block), never one
// message per expert. Two algorithms give bit-identical results:
//
//   Flat:         one alltoallv over all P ranks: up to P-1 messages per rank.
//   Hierarchical: L ranks per node, N = P/L nodes, rank r = node r/L, local index r%L.
//                 stage 1, inside the node: to local peer l' everything bound for local index l'
//                 on any node; stage 2, between nodes, among ranks with the same local index.
//                 Up to (L-1) + (N-1) messages per rank, only N-1 of them between nodes.
//
// A Plan is built once per step from the counts the loader already knows (rows to and from each
// rank) and serves every pass of that step: run() for the dispatch, run_reverse() for the
// combine, of every MoWE layer, forward and backward.
#pragma once

#include <memory>
#include <span>
#include <vector>

#include "comm/communicator.h"
#include "runtime/memory.h"

namespace mowe::comm {

class AllToAll {
 public:
  enum class Algorithm { Flat, Hierarchical };

  // Rows [src, src + rows) of one buffer copied to [dst, dst + rows) of another.
  struct Chunk {
    int64_t src = 0;
    int64_t dst = 0;
    int64_t rows = 0;
  };

  class Plan {
   public:
    int64_t send_rows() const { return send_total_; }  // rows this rank sends (dispatch)
    int64_t recv_rows() const { return recv_total_; }  // rows it receives

   private:
    friend class AllToAll;
    const AllToAll* owner_ = nullptr;
    std::vector<int64_t> send_, recv_;        // [P] rows to / from each rank
    std::vector<int64_t> s1_send_, s1_recv_;  // [L] stage 1: rows to / from each local peer
    std::vector<int64_t> s2_send_, s2_recv_;  // [N] stage 2: rows to / from each node
    std::vector<Chunk> pack_;     // send (by rank) -> stage 1 send (by local index, then node)
    std::vector<Chunk> shuffle_;  // stage 1 recv (by source, then node) -> stage 2 send (by node,
                                  // then source)
    int64_t send_total_ = 0, recv_total_ = 0, mid_total_ = 0;
  };

  // Collective over comm, which must outlive this object. Hierarchical splits comm into the
  // node groups and the same-local-index groups; ranks_per_node 0 takes the layout from the
  // system (comm.ranks_per_node()); it must divide comm.size().
  AllToAll(Communicator& comm, Algorithm algorithm, int ranks_per_node = 0);

  Algorithm algorithm() const { return algorithm_; }
  Communicator& comm() const { return comm_; }
  int ranks_per_node() const { return local_; }
  int num_nodes() const { return nodes_; }

  // Collective. send_rows[j] rows go to rank j, recv_rows[j] come from rank j (the loader's
  // counts). Hierarchical exchanges each rank's counts with its node peers once here: stage 2
  // needs the rows each node peer sends to each node, which no rank knows alone.
  Plan plan(std::span<const int64_t> send_rows, std::span<const int64_t> recv_rows, Arena& scratch);
  // The same into an existing plan, reusing its storage (no allocation once it has grown).
  void plan(std::span<const int64_t> send_rows, std::span<const int64_t> recv_rows, Arena& scratch,
            Plan& out);

  // send [plan.send_rows(), E] in destination-rank order -> recv [plan.recv_rows(), E] in
  // source-rank order: exactly what comm.alltoallv gives. Temporaries come from scratch.
  void run(const Plan& plan, const Tensor& send, const Tensor& recv, Arena& scratch);
  // The way back: send [plan.recv_rows(), E] in source order -> recv [plan.send_rows(), E] in
  // destination order, every row returning to where run() took it from.
  void run_reverse(const Plan& plan, const Tensor& send, const Tensor& recv, Arena& scratch);

  // Data passes only: calls = run/run_reverse calls; messages and bytes summed over the stages.
  const CollectiveStats& stats() const { return stats_; }
  const CollectiveStats& plan_stats() const { return plan_stats_; }  // count exchanges
  void reset_stats() { stats_ = plan_stats_ = {}; }

 private:
  CollectiveStats alltoall_counters() const;
  void check_plan(const Plan& plan, const Arena& scratch) const;
  void copy_chunks(std::span<const Chunk> chunks, bool reverse, const Tensor& from,
                   const Tensor& to);
  void exchange_counts(Plan& plan, std::span<const int64_t> send_rows, Arena& scratch);
  void run_stages(const Plan& plan, const Tensor& send, const Tensor& recv, Arena& scratch,
                  bool reverse);

  Communicator& comm_;
  Algorithm algorithm_;
  int local_ = 1;                        // L: ranks per node
  int nodes_ = 1;                        // N
  std::unique_ptr<Communicator> intra_;  // the L ranks of this node, by local index
  std::unique_ptr<Communicator> inter_;  // the N ranks with this local index, by node
  CollectiveStats stats_, plan_stats_;
  // exchange_counts' working arrays, kept so that steady-state plans allocate nothing.
  std::vector<int64_t> counts_mine_, counts_peers_, one_row_, send_offsets_, mid_offsets_;
};

const char* algorithm_name(AllToAll::Algorithm algorithm);  // "flat", "hierarchical"

}  // namespace mowe::comm
