// A sparse in-memory Backend: the export is a map of fixed-size pages,
// allocated on the first non-zero write. Unallocated pages read as zeros
// and report hole|zero; TRIM and WRITE_ZEROES free whole pages and free
// partly zeroed pages that become all zero. One mutex guards the map, so
// several sessions may share one MemoryBackend (multi-conn).
#ifndef NBD_ADAPTERS_SERVER_MEMORY_BACKEND_H_
#define NBD_ADAPTERS_SERVER_MEMORY_BACKEND_H_

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "adapters/server/backend.h"

namespace nbd {

class MemoryBackend : public Backend {
 public:
  static constexpr size_t kDefaultPageSize = 64 * 1024;

  // `page_size` must be a non-zero power of two.
  explicit MemoryBackend(uint64_t size, size_t page_size = kDefaultPageSize,
                         bool read_only = false);

  uint64_t Size() const override { return size_; }
  BackendCapabilities Capabilities() const override;
  absl::Status Read(uint64_t offset, absl::Span<uint8_t> buffer,
                    std::vector<ReadRun>* runs) override;
  absl::Status Write(uint64_t offset, absl::Span<const uint8_t> data,
                     bool fua) override;
  absl::Status Flush() override { return absl::OkStatus(); }
  absl::Status Trim(uint64_t offset, uint64_t length, bool fua) override;
  absl::Status Zero(uint64_t offset, uint64_t length, uint32_t flags) override;
  absl::Status Cache(uint64_t, uint64_t) override { return absl::OkStatus(); }
  absl::Status BlockStatus(uint64_t offset, uint64_t length, size_t max_extents,
                           std::vector<Extent>* extents) override;

  size_t allocated_pages() const;

 private:
  absl::Status CheckRange(uint64_t offset, uint64_t length) const;
  void ZeroLocked(uint64_t offset, uint64_t length)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const uint64_t size_;
  const size_t page_size_;
  const bool read_only_;
  mutable absl::Mutex mu_;
  std::map<uint64_t, std::unique_ptr<uint8_t[]>> pages_ ABSL_GUARDED_BY(mu_);
};

}  // namespace nbd

#endif  // NBD_ADAPTERS_SERVER_MEMORY_BACKEND_H_
