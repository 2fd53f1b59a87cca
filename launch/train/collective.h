// Errors inside collective work (a checkpoint write, a restore) must end every rank the same way:
// a rank that throws alone would leave the others waiting in the next collective.
#pragma once

#include <functional>
#include <string>

#include "comm/communicator.h"
#include "runtime/check.h"

namespace mowe::train {

// An error every rank has agreed on (and throws alike): a program may end cleanly, printing it
// once, instead of aborting the job.
class AgreedError : public Error {
 public:
  using Error::Error;
};

// Runs fn on every rank, then agrees on the outcome: when it threw on any rank, every rank throws
// an AgreedError with the message of the lowest failing rank, prefixed "rank R on host H: " when
// that is not rank 0.
void run_agreed(comm::Communicator& comm, const std::function<void()>& fn);

// `text` of rank `root` on every rank. Collective.
std::string broadcast_string(comm::Communicator& comm, int root, const std::string& text);

}  // namespace mowe::train
