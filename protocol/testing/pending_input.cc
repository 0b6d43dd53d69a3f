#include "protocol/testing/pending_input.h"

namespace nbd::testing {

void PendingInput::Append(ByteSpan bytes) {
  bytes_.insert(bytes_.end(), bytes.begin(), bytes.end());
}

void PendingInput::Consume(size_t n) {
  pos_ += n;
  if (pos_ == bytes_.size()) {
    Clear();
  } else if (pos_ > 4096 && pos_ > bytes_.size() / 2) {
    // Compact once the consumed prefix is most of the buffer.
    bytes_.erase(bytes_.begin(), bytes_.begin() + pos_);
    pos_ = 0;
  }
}

void PendingInput::Clear() {
  bytes_.clear();
  pos_ = 0;
}

}  // namespace nbd::testing
