#include "tools/nbd/buffer_pool.h"

#include <sys/mman.h>

#include <algorithm>
#include <new>

namespace nbd::tool {
namespace {

constexpr size_t kHugePage = size_t{2} << 20;

// At least one buffer per slab, whole huge pages, and no more than about
// 8 MiB at a time so a copy with few buffers in use does not pay for many.
size_t SlabSize(size_t buffer_size) {
  size_t per_slab = std::max<size_t>(1, (8 << 20) / buffer_size);
  size_t bytes = per_slab * buffer_size;
  return (bytes + kHugePage - 1) / kHugePage * kHugePage;
}

}  // namespace

void BufferPool::Unmap::operator()(uint8_t* p) const { ::munmap(p, length); }

BufferPool::BufferPool(size_t buffer_size)
    : buffer_size_(std::max<size_t>(1, buffer_size)),
      slab_size_(SlabSize(buffer_size_)) {}

void BufferPool::AddSlab() {
  // Over-allocate by one huge page and trim, so the slab starts on a huge
  // page boundary (mmap only promises 4 KiB alignment).
  size_t length = slab_size_ + kHugePage;
  void* raw = ::mmap(nullptr, length, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (raw == MAP_FAILED) throw std::bad_alloc();
  uintptr_t start = reinterpret_cast<uintptr_t>(raw);
  uintptr_t aligned = (start + kHugePage - 1) & ~(uintptr_t{kHugePage} - 1);
  if (aligned > start) ::munmap(raw, aligned - start);
  uintptr_t end = aligned + slab_size_;
  if (start + length > end)
    ::munmap(reinterpret_cast<void*>(end), start + length - end);
  uint8_t* slab = reinterpret_cast<uint8_t*>(aligned);
  // Only advice: without transparent huge pages this is a plain mapping.
  ::madvise(slab, slab_size_, MADV_HUGEPAGE);
  slabs_.emplace_back(slab, Unmap{slab_size_});
  size_t n = slab_size_ / buffer_size_;
  // Pushed in reverse so the slab is handed out from its start.
  for (size_t i = n; i > 0; --i) free_.push_back(slab + (i - 1) * buffer_size_);
}

uint8_t* BufferPool::Get() {
  if (free_.empty()) AddSlab();
  uint8_t* b = free_.back();
  free_.pop_back();
  return b;
}

}  // namespace nbd::tool
