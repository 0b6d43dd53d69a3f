// A Backend with no storage, like nbdkit's null plugin: reads return
// zeros, writes are discarded, and everything reports hole|zero.
#ifndef NBD_ADAPTERS_SERVER_NULL_BACKEND_H_
#define NBD_ADAPTERS_SERVER_NULL_BACKEND_H_

#include <cstdint>
#include <vector>

#include "adapters/server/backend.h"

namespace nbd {

class NullBackend : public Backend {
 public:
  explicit NullBackend(uint64_t size) : size_(size) {}

  uint64_t Size() const override { return size_; }
  BackendCapabilities Capabilities() const override;
  absl::Status Read(uint64_t offset, absl::Span<uint8_t> buffer,
                    std::vector<ReadRun>* runs) override;
  absl::Status Write(uint64_t offset, absl::Span<const uint8_t> data,
                     bool fua) override;
  absl::Status Flush() override { return absl::OkStatus(); }
  absl::Status Trim(uint64_t offset, uint64_t length, bool fua) override;
  absl::Status Zero(uint64_t offset, uint64_t length, uint32_t flags) override;
  absl::Status Cache(uint64_t offset, uint64_t length) override;
  absl::Status BlockStatus(uint64_t offset, uint64_t length, size_t max_extents,
                           std::vector<Extent>* extents) override;

 private:
  absl::Status CheckRange(uint64_t offset, uint64_t length) const;
  const uint64_t size_;
};

}  // namespace nbd

#endif  // NBD_ADAPTERS_SERVER_NULL_BACKEND_H_
