#include "adapters/engine/internal/pending_ops.h"

#include <utility>

namespace nbd::engine::internal {

void PendingOps::Insert(Cookie cookie, Op op) {
  ++size_;
  while (true) {
    Slot& slot = slots_[Index(cookie)];
    if (!slot.used) {
      slot.used = true;
      slot.cookie = cookie;
      slot.op = std::move(op);
      return;
    }
    if (slots_.size() >= kMaxSlots) {
      overflow_.emplace(cookie, std::move(op));
      return;
    }
    Grow();
  }
}

void PendingOps::Grow() {
  std::vector<Slot> old(slots_.size() * 2);
  old.swap(slots_);
  // Cookies distinct modulo n are distinct modulo 2n: no collisions here.
  for (Slot& slot : old) {
    if (slot.used) slots_[Index(slot.cookie)] = std::move(slot);
  }
}

Op* PendingOps::Find(Cookie cookie) {
  Slot& slot = slots_[Index(cookie)];
  if (slot.used && slot.cookie == cookie) return &slot.op;
  if (overflow_.empty()) return nullptr;
  auto it = overflow_.find(cookie);
  return it == overflow_.end() ? nullptr : &it->second;
}

Op PendingOps::Take(Cookie cookie) {
  --size_;
  Slot& slot = slots_[Index(cookie)];
  if (slot.used && slot.cookie == cookie) {
    slot.used = false;
    return std::move(slot.op);
  }
  auto node = overflow_.extract(cookie);
  return std::move(node.mapped());
}

const Op* PendingOps::Oldest() const {
  const Op* oldest = nullptr;
  for (const Slot& slot : slots_) {
    if (slot.used && (oldest == nullptr || slot.op.seq < oldest->seq)) {
      oldest = &slot.op;
    }
  }
  for (const auto& [cookie, op] : overflow_) {
    if (oldest == nullptr || op.seq < oldest->seq) oldest = &op;
  }
  return oldest;
}

}  // namespace nbd::engine::internal
