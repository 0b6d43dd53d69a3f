// The resumable receive side shared by nbd::Client and nbd::ServerSession.
//
// A core reads the wire as a sequence of units of known size (a header, an
// option payload, a READ/WRITE payload). It arms the next unit with
// Expect(), ExpectInto() or Skip(); bytes then arrive in any split, through
// either input path:
//   copying:   Feed(bytes, accept, on_complete) copies what the unit takes;
//   zero-copy: Buffer() hands out the span to receive into, Commit(n) takes
//              the n bytes received there.
// When a unit is complete the core dispatches on unit() (its own enum) and
// arms the next one, usually from inside that dispatch.
//
// Two client policies are optional:
//   - read-ahead (set_readahead): where the core allows it, Buffer() hands
//     out a larger buffer of the receiver's own at the start of a unit; the
//     bytes then go through the copying path (Commit() returns kStaged).
//   - probe (set_probe): when nothing is expected, Buffer() hands out one
//     byte of the receiver's own, so the transport still notices EOF or a
//     stray byte; that byte also comes back as kStaged.
//
// Memory: a unit armed with ExpectInto() is received straight into caller
// memory, which must stay valid until the unit completes or the receiver is
// re-armed or cleared. Expect() and Skip() use the receiver's scratch;
// scratch() stays readable after the unit completed, until the next arm.
// The probe byte never moves while the receiver lives, so an asynchronous
// receive may still be writing into it when the core arms a unit.
#ifndef NBD_PROTOCOL_INTERNAL_RECEIVER_H_
#define NBD_PROTOCOL_INTERNAL_RECEIVER_H_

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <utility>
#include <vector>

#include "absl/types/span.h"

namespace nbd::internal {

// Outcome of Receiver::Commit().
enum class Committed {
  kProgress,      // bytes taken; the unit is not complete (or n was 0)
  kUnitComplete,  // the unit is complete: dispatch on unit()
  kStaged,        // the bytes are in staged(): pass them to the copying path
  kBeyondBuffer,  // n exceeds the span Buffer() handed out; nothing changed
  kNoBuffer,      // n > 0 but no unit is expected; nothing changed
};

// `Unit` is the core's enum of what it waits for; Unit{} means "nothing".
template <typename Unit>
class Receiver {
 public:
  // Skip() discards input through a scratch buffer of at most this size.
  static constexpr size_t kSkipChunk = 64 * 1024;

  Receiver() = default;
  Receiver(const Receiver&) = delete;
  Receiver& operator=(const Receiver&) = delete;

  // ---- Arming. Each returns true if the unit is already complete (n == 0):
  // the caller dispatches it at once.
  [[nodiscard]] bool Expect(Unit unit, size_t n) {
    Arm(unit, nullptr, n);
    scratch_.resize(n);
    return n == 0;
  }
  [[nodiscard]] bool ExpectInto(Unit unit, uint8_t* dst, size_t n) {
    Arm(unit, dst, n);
    return n == 0;
  }
  // Discards `n` bytes, reported as one unit once the last one arrived.
  [[nodiscard]] bool Skip(Unit unit, uint64_t n) {
    const size_t chunk = static_cast<size_t>(std::min<uint64_t>(n, kSkipChunk));
    Arm(unit, nullptr, chunk);
    skip_left_ = n;
    scratch_.resize(chunk);
    return n == 0;
  }
  // Expects nothing. scratch() keeps its bytes.
  void Clear() {
    unit_ = Unit{};
    dst_ = nullptr;
    skip_left_ = 0;
  }
  // Clear(), and frees the scratch.
  void ReleaseMemory() {
    Clear();
    scratch_.clear();
    scratch_.shrink_to_fit();
  }
  // Moves the scratch bytes out and expects nothing.
  std::vector<uint8_t> TakeScratch() {
    std::vector<uint8_t> bytes = std::move(scratch_);
    scratch_.clear();
    Clear();
    return bytes;
  }

  // ---- Policies.
  // Read-ahead of up to `n` bytes where Buffer(true) is called; 0 = none.
  void set_readahead(size_t n) { readahead_size_ = n; }
  void set_probe(bool on) { probe_enabled_ = on; }

  // ---- State.
  Unit unit() const { return unit_; }
  bool expecting() const { return unit_ != Unit{}; }
  // Size of the unit (for Skip(), of the current chunk) and bytes received.
  size_t want() const { return want_; }
  size_t got() const { return got_; }
  absl::Span<const uint8_t> scratch() const { return scratch_; }

  // ---- Zero-copy input.
  // The span to receive into next. `readahead_ok`: the core allows
  // read-ahead at the start of the current unit. Empty if nothing is
  // expected and there is no probe, or if the unit is already complete.
  absl::Span<uint8_t> Buffer(bool readahead_ok) {
    handed_ = Handed::kUnit;
    if (!expecting()) {
      if (!probe_enabled_) return {};
      handed_ = Handed::kProbe;
      return absl::MakeSpan(probe_, 1);
    }
    if (readahead_ok && readahead_size_ > 0 && got_ == 0) {
      handed_ = Handed::kReadahead;
      readahead_.resize(std::max(readahead_size_, want_));
      return absl::MakeSpan(readahead_);
    }
    return absl::Span<uint8_t>(base() + got_, want_ - got_);
  }
  // The span Buffer() handed out is no longer the one to commit into (the
  // core refused input, or input arrived through the copying path).
  void ForgetBuffer() { handed_ = Handed::kUnit; }

  // `n` bytes arrived in the span the last Buffer() returned.
  Committed Commit(size_t n) {
    switch (std::exchange(handed_, Handed::kUnit)) {
      case Handed::kProbe:
        if (n > 1) return Committed::kBeyondBuffer;
        if (n == 0) return Committed::kProgress;
        staged_ = absl::MakeConstSpan(probe_, 1);
        return Committed::kStaged;
      case Handed::kReadahead:
        if (n > readahead_.size()) return Committed::kBeyondBuffer;
        staged_ = absl::MakeConstSpan(readahead_.data(), n);
        return Committed::kStaged;
      case Handed::kUnit:
        break;
    }
    if (!expecting())
      return n == 0 ? Committed::kProgress : Committed::kNoBuffer;
    if (n > want_ - got_) return Committed::kBeyondBuffer;
    got_ += n;
    if (n > 0 && got_ == want_ && ChunkDone()) return Committed::kUnitComplete;
    return Committed::kProgress;
  }
  // After kStaged: the received bytes, valid until the next Buffer().
  absl::Span<const uint8_t> staged() const { return staged_; }

  // ---- Copying input.
  // Copies from `bytes` into the expected units while `accept()` is true,
  // calling `on_complete()` each time a unit completes (which usually arms
  // the next one). Stops when the bytes run out, nothing is expected, or
  // the current unit is already complete. Returns the bytes taken.
  template <typename Accept, typename OnComplete>
  size_t Feed(absl::Span<const uint8_t> bytes, Accept accept,
              OnComplete on_complete) {
    handed_ = Handed::kUnit;
    size_t used = 0;
    while (used < bytes.size() && expecting() && got_ < want_ && accept()) {
      const size_t take = std::min(want_ - got_, bytes.size() - used);
      std::memcpy(base() + got_, bytes.data() + used, take);
      got_ += take;
      used += take;
      if (got_ == want_ && ChunkDone()) on_complete();
    }
    return used;
  }

 private:
  enum class Handed { kUnit, kReadahead, kProbe };

  void Arm(Unit unit, uint8_t* dst, size_t n) {
    unit_ = unit;
    dst_ = dst;
    want_ = n;
    got_ = 0;
    skip_left_ = 0;
  }
  uint8_t* base() { return dst_ != nullptr ? dst_ : scratch_.data(); }
  // The current chunk is full. False while a Skip() has more to discard
  // (the next chunk is armed); true once the unit is complete.
  bool ChunkDone() {
    if (skip_left_ == 0) return true;
    skip_left_ -= want_;
    if (skip_left_ == 0) return true;
    want_ = static_cast<size_t>(std::min<uint64_t>(skip_left_, kSkipChunk));
    got_ = 0;
    return false;
  }

  Unit unit_ = Unit{};
  size_t want_ = 0;
  size_t got_ = 0;
  uint8_t* dst_ = nullptr;  // caller memory, or nullptr for scratch_
  uint64_t skip_left_ = 0;  // Skip(): bytes still to discard, this chunk too
  std::vector<uint8_t> scratch_;

  size_t readahead_size_ = 0;
  std::vector<uint8_t> readahead_;
  bool probe_enabled_ = false;
  uint8_t probe_[1] = {};
  Handed handed_ = Handed::kUnit;
  absl::Span<const uint8_t> staged_;
};

}  // namespace nbd::internal

#endif  // NBD_PROTOCOL_INTERNAL_RECEIVER_H_
