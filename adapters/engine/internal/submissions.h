// Work that other threads hand to an Engine's loop thread (through a
// Submitter or ThreadSafeExport): a command for an export's connection, or
// a task.
#ifndef NBD_ADAPTERS_ENGINE_INTERNAL_SUBMISSIONS_H_
#define NBD_ADAPTERS_ENGINE_INTERNAL_SUBMISSIONS_H_

#include <cstddef>

#include "absl/functional/any_invocable.h"
#include "adapters/engine/engine.h"
#include "adapters/engine/internal/link.h"
#include "adapters/post/post_queue.h"

namespace nbd::engine::internal {

struct Submission {
  Export* exp = nullptr;  // null: run `task`
  size_t conn = 0;
  Op op;
  absl::AnyInvocable<void()> task;
};

// Shared by the Engine and its handles; the Engine closes it at
// Shutdown()/Disconnect() and in its destructor.
class SubmitQueue : public adapters::PostQueue<Submission> {
 public:
  using PostQueue::PostQueue;
};

}  // namespace nbd::engine::internal

#endif  // NBD_ADAPTERS_ENGINE_INTERNAL_SUBMISSIONS_H_
