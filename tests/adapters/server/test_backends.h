// Backends for server tests: one that fails reads of a chosen range, and a
// wrapper that records which calls (and which FUA/zero flags) reach the
// backend. Single-threaded tests only.
#ifndef NBD_TESTS_ADAPTERS_SERVER_TEST_BACKENDS_H_
#define NBD_TESTS_ADAPTERS_SERVER_TEST_BACKENDS_H_

#include <cstdint>
#include <optional>
#include <vector>

#include "adapters/server/backend.h"
#include "adapters/server/memory_backend.h"
#include "protocol/constants.h"

namespace nbd::test {

// A MemoryBackend whose reads fail where they touch a chosen range, the way
// a disk with a bad sector does: the part before the bad range is read and
// reported as runs (see Backend::Read), then the read fails with the errno.
class FaultyBackend : public MemoryBackend {
 public:
  using MemoryBackend::MemoryBackend;

  void FailReads(uint64_t offset, uint64_t length, int errno_value);
  absl::Status Read(uint64_t offset, absl::Span<uint8_t> buffer,
                    std::vector<ReadRun>* runs) override;

 private:
  struct Bad {
    uint64_t offset;
    uint64_t length;
    int errno_value;
  };
  std::optional<Bad> bad_;
};

// Forwards every call to `inner` and records it.
class RecordingBackend : public Backend {
 public:
  struct Call {
    Command command = Command::kRead;
    uint64_t offset = 0;
    uint64_t length = 0;
    bool fua = false;
    uint32_t zero_flags = 0;  // kZero* for WRITE_ZEROES
    bool operator==(const Call&) const = default;
  };

  explicit RecordingBackend(Backend& inner) : inner_(inner) {}

  const std::vector<Call>& calls() const { return calls_; }

  uint64_t Size() const override { return inner_.Size(); }
  BackendCapabilities Capabilities() const override {
    return inner_.Capabilities();
  }
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

 private:
  Backend& inner_;
  std::vector<Call> calls_;
};

}  // namespace nbd::test

#endif  // NBD_TESTS_ADAPTERS_SERVER_TEST_BACKENDS_H_
