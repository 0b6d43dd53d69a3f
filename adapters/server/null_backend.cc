#include "adapters/server/null_backend.h"

#include <cerrno>

#include "protocol/status.h"

namespace nbd {

BackendCapabilities NullBackend::Capabilities() const {
  BackendCapabilities c;
  c.can_flush = c.can_fua = c.can_trim = c.can_zero = c.can_fast_zero = true;
  c.can_cache = c.can_multi_conn = c.can_extents = true;
  return c;
}

absl::Status NullBackend::CheckRange(uint64_t offset, uint64_t length) const {
  if (offset > size_ || length > size_ - offset) {
    return ErrnoStatus(ENOSPC, "request runs past the end of the export");
  }
  return absl::OkStatus();
}

absl::Status NullBackend::Read(uint64_t offset, absl::Span<uint8_t> buffer,
                               std::vector<ReadRun>* runs) {
  if (absl::Status s = CheckRange(offset, buffer.size()); !s.ok()) return s;
  if (!buffer.empty()) runs->push_back({buffer.size(), true});
  return absl::OkStatus();
}

absl::Status NullBackend::Write(uint64_t offset, absl::Span<const uint8_t> data,
                                bool) {
  return CheckRange(offset, data.size());
}

absl::Status NullBackend::Trim(uint64_t offset, uint64_t length, bool) {
  return CheckRange(offset, length);
}

absl::Status NullBackend::Zero(uint64_t offset, uint64_t length, uint32_t) {
  return CheckRange(offset, length);
}

absl::Status NullBackend::Cache(uint64_t offset, uint64_t length) {
  return CheckRange(offset, length);
}

absl::Status NullBackend::BlockStatus(uint64_t offset, uint64_t length,
                                      size_t max_extents,
                                      std::vector<Extent>* extents) {
  if (absl::Status s = CheckRange(offset, length); !s.ok()) return s;
  if (length == 0 || max_extents == 0) {
    return ErrnoStatus(EINVAL, "empty block status request");
  }
  extents->push_back({length, kStateHole | kStateZero});
  return absl::OkStatus();
}

}  // namespace nbd
