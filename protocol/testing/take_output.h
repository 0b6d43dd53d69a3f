// Taking a core's output the way a transport would, checked: the one loop
// both runners (client_runner, server_runner) use, since nbd::Client and
// nbd::ServerSession share the PeekOutput/ConsumeOutput shape.
#ifndef NBD_PROTOCOL_TESTING_TAKE_OUTPUT_H_
#define NBD_PROTOCOL_TESTING_TAKE_OUTPUT_H_

#include <algorithm>
#include <cstddef>
#include <string>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/types/span.h"
#include "protocol/io.h"
#include "protocol/wire.h"

namespace nbd::testing {

// Moves up to `limit` pending output bytes of `core` to the end of `sink`,
// in transfers no larger than `piece(available)` (the run's split), and
// checks the output contract on the way: PeekOutput() describes at most
// what is pending, ConsumeOutput() accepts what was taken, and
// pending_output_bytes() drops by exactly that (or to 0, when the
// connection ended and dropped the rest). Returns "" or what broke; the
// bytes taken before a break stay in `sink`.
template <typename Core>
std::string TakeOutput(Core& core, size_t limit,
                       absl::FunctionRef<size_t(size_t)> piece, Bytes& sink) {
  while (limit > 0 && core.pending_output_bytes() > 0) {
    const size_t pending = core.pending_output_bytes();
    // A small gather list, so long queues are peeked in several rounds.
    IoSlice slices[3];
    const size_t count = core.PeekOutput(absl::MakeSpan(slices));
    size_t peeked = 0;
    for (size_t i = 0; i < count; ++i) peeked += slices[i].size;
    if (count == 0 || peeked == 0 || peeked > pending) {
      return absl::StrCat("PeekOutput gave ", count, " slices / ", peeked,
                          " bytes with ", pending, " bytes pending");
    }
    const size_t want =
        std::min({limit, peeked, piece(std::min(limit, peeked))});
    size_t copied = 0;
    for (size_t i = 0; i < count && copied < want; ++i) {
      const size_t n = std::min(slices[i].size, want - copied);
      sink.insert(sink.end(), slices[i].data, slices[i].data + n);
      copied += n;
    }
    absl::Status status = core.ConsumeOutput(copied);
    if (!status.ok()) {
      return absl::StrCat("ConsumeOutput(", copied,
                          ") failed: ", status.ToString());
    }
    limit -= copied;
    if (core.pending_output_bytes() != pending - copied &&
        core.pending_output_bytes() != 0) {
      return "pending_output_bytes() did not drop by the bytes consumed";
    }
  }
  return "";
}

}  // namespace nbd::testing

#endif  // NBD_PROTOCOL_TESTING_TAKE_OUTPUT_H_
