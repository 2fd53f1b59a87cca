// Crash-consistency testing: with MOWE_CHECKPOINT_FAULT=<point>:<n> in the environment, the n-th
// time this process reaches `point` of a checkpoint write it kills itself with SIGKILL, as the
// OOM killer or a cancelled job would, so a test can check that a process dying there still
// leaves a loadable checkpoint. Only the process dies: the kernel keeps what it had written (the
// page cache is intact), so this tests atomicity (an unfinished checkpoint is never taken for a
// complete one), not durability; a power loss or kernel crash, which loses unsynced pages, is
// not simulated, and nothing tests that the fsyncs make a checkpoint survive one. The tests set
// the variable for every rank, so every rank is set to die at the same point.
// Points: "tensor" (a data file half written), "rename" (every file and the manifest written,
// before the directory is renamed into place), "latest" (renamed, before the `latest` pointer is
// updated). Unset (always, in production): a no-op.
#pragma once

namespace mowe::checkpoint {

void fault_point(const char* point);

}  // namespace mowe::checkpoint
