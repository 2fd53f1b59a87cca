// Crash-consistency testing: with MOWE_CHECKPOINT_FAULT=<point>:<n> in the environment, the n-th
// time this process reaches `point` of a checkpoint write it kills itself with SIGKILL, exactly
// as a node failure or the OOM killer would, so a test can check that a crash there still leaves
// a loadable checkpoint. Points: "tensor" (a data file half written), "rename" (every file and
// the manifest written, before the directory is renamed into place), "latest" (renamed, before
// the `latest` pointer is updated). Unset (always, in production): a no-op.
#pragma once

namespace mowe::checkpoint {

void fault_point(const char* point);

}  // namespace mowe::checkpoint
