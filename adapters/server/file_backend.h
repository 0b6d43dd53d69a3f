// A Backend over a regular file (or block device): pread/pwrite,
// fdatasync for FLUSH and FUA, fallocate(PUNCH_HOLE / ZERO_RANGE) for TRIM
// and WRITE_ZEROES, and SEEK_DATA/SEEK_HOLE for holes in READ and for
// BLOCK_STATUS. Positional I/O only, so one FileBackend is safe to share
// between sessions and threads.
#ifndef NBD_ADAPTERS_SERVER_FILE_BACKEND_H_
#define NBD_ADAPTERS_SERVER_FILE_BACKEND_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "adapters/server/backend.h"

namespace nbd {

class FileBackend : public Backend {
 public:
  // Opens `path` (O_RDONLY if read_only, else O_RDWR). The export size is
  // the file size at open time.
  static absl::StatusOr<std::unique_ptr<FileBackend>> Open(
      const std::string& path, bool read_only = false);
  ~FileBackend() override;
  FileBackend(const FileBackend&) = delete;
  FileBackend& operator=(const FileBackend&) = delete;

  uint64_t Size() const override { return size_; }
  BackendCapabilities Capabilities() const override;
  absl::Status Read(uint64_t offset, absl::Span<uint8_t> buffer,
                    std::vector<ReadRun>* runs) override;
  absl::Status Write(uint64_t offset, absl::Span<const uint8_t> data,
                     bool fua) override;
  absl::Status Flush() override;
  absl::Status Trim(uint64_t offset, uint64_t length, bool fua) override;
  absl::Status Zero(uint64_t offset, uint64_t length, uint32_t flags) override;
  absl::Status Cache(uint64_t offset, uint64_t length) override;
  absl::Status BlockStatus(uint64_t offset, uint64_t length, size_t max_extents,
                           std::vector<Extent>* extents) override;

  // Successful fdatasync calls so far (FLUSH, and writes, trims and zeroes
  // with FUA): lets tests see that FUA reached the disk, which the file's
  // contents cannot show.
  uint64_t syncs() const { return syncs_.load(std::memory_order_relaxed); }

 private:
  FileBackend(int fd, uint64_t size, bool read_only);
  // The data/hole run starting at `offset` (ending at or before `end`).
  absl::StatusOr<ReadRun> RunAt(uint64_t offset, uint64_t end) const;
  absl::Status WriteZeros(uint64_t offset, uint64_t length);
  absl::Status CheckWrite(uint64_t offset, uint64_t length) const;
  // fdatasync, counted in syncs_.
  absl::Status Sync();

  const int fd_;
  const uint64_t size_;
  const bool read_only_;
  std::atomic<uint64_t> syncs_{0};
};

}  // namespace nbd

#endif  // NBD_ADAPTERS_SERVER_FILE_BACKEND_H_
