// The commands on the wire of one connection, by cookie, found without
// hashing: the core numbers cookies consecutively, so a table indexed by
// cookie modulo its size (a power of two) holds them. A cookie whose slot is
// taken (a command still outstanding after `size` later ones) doubles the
// table, up to kMaxSlots; past that it goes to an overflow map.
#ifndef NBD_ADAPTERS_ENGINE_INTERNAL_PENDING_OPS_H_
#define NBD_ADAPTERS_ENGINE_INTERNAL_PENDING_OPS_H_

#include <cstddef>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "adapters/engine/internal/link.h"
#include "protocol/client/events.h"

namespace nbd::engine::internal {

class PendingOps {
 public:
  static constexpr size_t kInitialSlots = 64;
  static constexpr size_t kMaxSlots = 4096;

  PendingOps() : slots_(kInitialSlots) {}

  size_t size() const { return size_; }
  // `cookie` must not be pending already.
  void Insert(Cookie cookie, Op op);
  // The pending op of `cookie`, or null.
  Op* Find(Cookie cookie);
  // Removes the pending op of `cookie` (which Find() returned) and returns
  // it.
  Op Take(Cookie cookie);
  // The pending op issued first (lowest Op::seq), or null.
  const Op* Oldest() const;

 private:
  struct Slot {
    bool used = false;
    Cookie cookie = 0;
    Op op;
  };
  size_t Index(Cookie cookie) const { return cookie & (slots_.size() - 1); }
  void Grow();

  std::vector<Slot> slots_;
  absl::flat_hash_map<Cookie, Op> overflow_;
  size_t size_ = 0;
};

}  // namespace nbd::engine::internal

#endif  // NBD_ADAPTERS_ENGINE_INTERNAL_PENDING_OPS_H_
