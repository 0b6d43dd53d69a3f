// The peer's bytes a runner has not fed to the core yet.
#ifndef NBD_PROTOCOL_TESTING_PENDING_INPUT_H_
#define NBD_PROTOCOL_TESTING_PENDING_INPUT_H_

#include <cstddef>

#include "protocol/wire.h"

namespace nbd::testing {

// Appended at the back, consumed from the front, in amortized constant time
// per byte, so feeding a large payload one byte at a time stays linear.
class PendingInput {
 public:
  void Append(ByteSpan bytes);
  // The bytes not consumed yet; valid until the next non-const call.
  ByteSpan view() const { return ByteSpan(bytes_).subspan(pos_); }
  size_t size() const { return bytes_.size() - pos_; }
  bool empty() const { return size() == 0; }
  // Drops the first `n` bytes; `n` must not exceed size().
  void Consume(size_t n);
  void Clear();

 private:
  Bytes bytes_;
  size_t pos_ = 0;
};

}  // namespace nbd::testing

#endif  // NBD_PROTOCOL_TESTING_PENDING_INPUT_H_
