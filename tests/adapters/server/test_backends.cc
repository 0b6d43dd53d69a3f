#include "tests/adapters/server/test_backends.h"

#include <algorithm>

#include "absl/strings/str_format.h"
#include "protocol/status.h"

namespace nbd::test {

void FaultyBackend::FailReads(uint64_t offset, uint64_t length,
                              int errno_value) {
  bad_ = Bad{offset, length, errno_value};
}

absl::Status FaultyBackend::Read(uint64_t offset, absl::Span<uint8_t> buffer,
                                 std::vector<ReadRun>* runs) {
  if (!bad_.has_value()) return MemoryBackend::Read(offset, buffer, runs);
  const uint64_t end = offset + buffer.size();
  const uint64_t bad_end = bad_->offset + bad_->length;
  if (end <= bad_->offset || offset >= bad_end) {
    return MemoryBackend::Read(offset, buffer, runs);
  }
  const uint64_t fail_at = std::max(offset, bad_->offset);
  if (fail_at > offset) {
    absl::Status s = MemoryBackend::Read(
        offset, buffer.first(static_cast<size_t>(fail_at - offset)), runs);
    if (!s.ok()) return s;
  }
  return ErrnoStatus(bad_->errno_value,
                     absl::StrFormat("bad sector at %d", fail_at));
}

absl::Status RecordingBackend::Read(uint64_t offset, absl::Span<uint8_t> buffer,
                                    std::vector<ReadRun>* runs) {
  calls_.push_back({Command::kRead, offset, buffer.size()});
  return inner_.Read(offset, buffer, runs);
}

absl::Status RecordingBackend::Write(uint64_t offset,
                                     absl::Span<const uint8_t> data, bool fua) {
  calls_.push_back({Command::kWrite, offset, data.size(), fua});
  return inner_.Write(offset, data, fua);
}

absl::Status RecordingBackend::Flush() {
  calls_.push_back({Command::kFlush});
  return inner_.Flush();
}

absl::Status RecordingBackend::Trim(uint64_t offset, uint64_t length,
                                    bool fua) {
  calls_.push_back({Command::kTrim, offset, length, fua});
  return inner_.Trim(offset, length, fua);
}

absl::Status RecordingBackend::Zero(uint64_t offset, uint64_t length,
                                    uint32_t flags) {
  calls_.push_back(
      {Command::kWriteZeroes, offset, length, (flags & kZeroFua) != 0, flags});
  return inner_.Zero(offset, length, flags);
}

absl::Status RecordingBackend::Cache(uint64_t offset, uint64_t length) {
  calls_.push_back({Command::kCache, offset, length});
  return inner_.Cache(offset, length);
}

absl::Status RecordingBackend::BlockStatus(uint64_t offset, uint64_t length,
                                           size_t max_extents,
                                           std::vector<Extent>* extents) {
  calls_.push_back({Command::kBlockStatus, offset, length});
  return inner_.BlockStatus(offset, length, max_extents, extents);
}

}  // namespace nbd::test
