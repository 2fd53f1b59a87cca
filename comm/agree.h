// Agreement across ranks. An error one rank meets (a bad config, a file missing on one node, a
// failed checkpoint write) must end every rank the same way: a rank that throws alone leaves the
// others waiting in the next collective, or ends the job with an abort banner instead of one
// message. And what every rank reads for itself (the config, the dispatch plan) must be the same
// everywhere, or the ranks silently compute different things.
//
// Every function here is collective over a communicator of host (CPU) tensors.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "comm/communicator.h"
#include "runtime/check.h"

namespace mowe::comm {

// An error every rank has agreed on and throws alike: a program may end cleanly, printing it once
// (rank 0), instead of aborting the job.
class AgreedError : public Error {
 public:
  using Error::Error;
};

// `text` of rank `root` on every rank.
std::string broadcast_string(Communicator& comm, int root, const std::string& text);

// The `mine` of the lowest rank whose `mine` is not empty, on every rank; empty when it is empty
// on every rank.
std::string lowest_rank_text(Communicator& comm, const std::string& mine);

// Runs fn on every rank, then agrees on the outcome: when it threw on any rank, every rank throws
// an AgreedError with the message of the lowest failing rank, prefixed "rank R on host H: " when
// that is not rank 0.
void run_agreed(Communicator& comm, const std::function<void()>& fn);

// Unless every rank's `fingerprint` (a hash of the bytes that must agree) equals rank 0's, every
// rank throws the AgreedError "<what>: rank R on host H differs from rank 0 (fingerprint F, rank
// 0's G): <remedy>", naming the lowest rank that differs.
void check_same_everywhere(Communicator& comm, uint64_t fingerprint, const std::string& what,
                           const std::string& remedy);

}  // namespace mowe::comm
