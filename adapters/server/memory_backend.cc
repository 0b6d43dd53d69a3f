#include "adapters/server/memory_backend.h"

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "absl/strings/str_format.h"
#include "protocol/status.h"

namespace nbd {
namespace {

bool AllZero(const uint8_t* p, size_t n) {
  return n == 0 || (p[0] == 0 && std::memcmp(p, p + 1, n - 1) == 0);
}

// Appends a run, merging it with the previous one of the same kind.
void AddRun(std::vector<ReadRun>* runs, uint64_t length, bool hole) {
  if (!runs->empty() && runs->back().hole == hole) {
    runs->back().length += length;
  } else {
    runs->push_back({length, hole});
  }
}

}  // namespace

MemoryBackend::MemoryBackend(uint64_t size, size_t page_size, bool read_only)
    : size_(size), page_size_(page_size), read_only_(read_only) {}

BackendCapabilities MemoryBackend::Capabilities() const {
  BackendCapabilities c;
  c.read_only = read_only_;
  c.can_flush = c.can_fua = c.can_trim = c.can_zero = c.can_fast_zero = true;
  c.can_cache = c.can_multi_conn = c.can_extents = true;
  return c;
}

absl::Status MemoryBackend::CheckRange(uint64_t offset, uint64_t length) const {
  if (offset > size_ || length > size_ - offset) {
    return ErrnoStatus(ENOSPC, absl::StrFormat("[%d, +%d) is outside the "
                                               "%d-byte export",
                                               offset, length, size_));
  }
  return absl::OkStatus();
}

absl::Status MemoryBackend::Read(uint64_t offset, absl::Span<uint8_t> buffer,
                                 std::vector<ReadRun>* runs) {
  if (absl::Status s = CheckRange(offset, buffer.size()); !s.ok()) return s;
  absl::MutexLock lock(&mu_);
  uint64_t pos = offset;
  const uint64_t end = offset + buffer.size();
  while (pos < end) {
    const uint64_t page = pos / page_size_;
    const size_t in_page = static_cast<size_t>(pos % page_size_);
    auto it = pages_.lower_bound(page);
    if (it != pages_.end() && it->first == page) {
      const size_t n = static_cast<size_t>(
          std::min<uint64_t>(page_size_ - in_page, end - pos));
      std::memcpy(buffer.data() + (pos - offset), it->second.get() + in_page,
                  n);
      AddRun(runs, n, false);
      pos += n;
      continue;
    }
    // A hole up to the next allocated page (or the end).
    uint64_t hole_end = end;
    if (it != pages_.end()) hole_end = std::min(end, it->first * page_size_);
    AddRun(runs, hole_end - pos, true);
    pos = hole_end;
  }
  return absl::OkStatus();
}

absl::Status MemoryBackend::Write(uint64_t offset,
                                  absl::Span<const uint8_t> data, bool) {
  if (read_only_) return ErrnoStatus(EPERM, "read-only export");
  if (absl::Status s = CheckRange(offset, data.size()); !s.ok()) return s;
  absl::MutexLock lock(&mu_);
  uint64_t pos = offset;
  const uint64_t end = offset + data.size();
  while (pos < end) {
    const uint64_t page = pos / page_size_;
    const size_t in_page = static_cast<size_t>(pos % page_size_);
    const size_t n = static_cast<size_t>(
        std::min<uint64_t>(page_size_ - in_page, end - pos));
    const uint8_t* src = data.data() + (pos - offset);
    auto it = pages_.find(page);
    if (it == pages_.end()) {
      if (AllZero(src, n)) {  // stays sparse
        pos += n;
        continue;
      }
      it = pages_.emplace(page, std::make_unique<uint8_t[]>(page_size_)).first;
    }
    std::memcpy(it->second.get() + in_page, src, n);
    pos += n;
  }
  return absl::OkStatus();
}

void MemoryBackend::ZeroLocked(uint64_t offset, uint64_t length) {
  uint64_t pos = offset;
  const uint64_t end = offset + length;
  while (pos < end) {
    const uint64_t page = pos / page_size_;
    auto it = pages_.lower_bound(page);
    if (it == pages_.end() || it->first * page_size_ >= end) return;
    if (it->first != page) {
      pos = it->first * page_size_;
      continue;
    }
    const size_t in_page = static_cast<size_t>(pos % page_size_);
    const size_t n = static_cast<size_t>(
        std::min<uint64_t>(page_size_ - in_page, end - pos));
    if (n == page_size_) {
      pages_.erase(it);
    } else {
      std::memset(it->second.get() + in_page, 0, n);
      if (AllZero(it->second.get(), page_size_)) pages_.erase(it);
    }
    pos += n;
  }
}

absl::Status MemoryBackend::Trim(uint64_t offset, uint64_t length, bool) {
  if (read_only_) return ErrnoStatus(EPERM, "read-only export");
  if (absl::Status s = CheckRange(offset, length); !s.ok()) return s;
  absl::MutexLock lock(&mu_);
  ZeroLocked(offset, length);
  return absl::OkStatus();
}

absl::Status MemoryBackend::Zero(uint64_t offset, uint64_t length, uint32_t) {
  if (read_only_) return ErrnoStatus(EPERM, "read-only export");
  if (absl::Status s = CheckRange(offset, length); !s.ok()) return s;
  absl::MutexLock lock(&mu_);
  ZeroLocked(offset, length);  // always fast: no data is written
  return absl::OkStatus();
}

absl::Status MemoryBackend::BlockStatus(uint64_t offset, uint64_t length,
                                        size_t max_extents,
                                        std::vector<Extent>* extents) {
  if (absl::Status s = CheckRange(offset, length); !s.ok()) return s;
  if (length == 0 || max_extents == 0) {
    return ErrnoStatus(EINVAL, "empty block status request");
  }
  absl::MutexLock lock(&mu_);
  const size_t first = extents->size();
  uint64_t pos = offset;
  const uint64_t end = offset + length;
  auto add = [&](uint64_t n, uint64_t flags) {
    if (extents->size() > first && extents->back().flags == flags) {
      extents->back().length += n;
    } else {
      extents->push_back({n, flags});
    }
  };
  while (pos < end && extents->size() - first < max_extents) {
    const uint64_t page = pos / page_size_;
    auto it = pages_.lower_bound(page);
    if (it != pages_.end() && it->first == page) {
      const uint64_t page_end = std::min(end, (page + 1) * page_size_);
      add(page_end - pos, 0);
      pos = page_end;
      continue;
    }
    uint64_t hole_end = end;
    if (it != pages_.end()) hole_end = std::min(end, it->first * page_size_);
    add(hole_end - pos, kStateHole | kStateZero);
    pos = hole_end;
  }
  return absl::OkStatus();
}

size_t MemoryBackend::allocated_pages() const {
  absl::MutexLock lock(&mu_);
  return pages_.size();
}

}  // namespace nbd
