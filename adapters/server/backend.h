// nbd::Backend: the storage behind an NBD export, as used by the server
// glue (serve.h) and the epoll server (epoll_server.h).
//
// Contract for implementations:
//  - Calls may come from several threads and several sessions at once
//    (multi-conn): an implementation is thread-safe.
//  - Ranges are already validated by the session: inside [0, Size()),
//    aligned, READ/WRITE at most the advertised max_block.
//  - Errors are absl::Status values carrying an errno (nbd::ErrnoStatus);
//    the session sends that errno to the client (EROFS goes out as EPERM,
//    unknown values as EINVAL).
#ifndef NBD_ADAPTERS_SERVER_BACKEND_H_
#define NBD_ADAPTERS_SERVER_BACKEND_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/types/span.h"
#include "protocol/server/options.h"
#include "protocol/wire.h"

namespace nbd {

struct BackendCapabilities {
  bool read_only = false;
  bool can_flush = false;
  bool can_fua = false;
  bool can_trim = false;
  bool can_zero = false;
  bool can_fast_zero = false;
  bool can_cache = false;
  bool can_multi_conn = false;
  bool can_extents = false;  // BlockStatus reports real allocation
};

// One run of a Read(): `length` bytes of data, or a hole (reads as zeros).
struct ReadRun {
  uint64_t length = 0;
  bool hole = false;
  bool operator==(const ReadRun&) const = default;
};

// Backend::Zero flags.
inline constexpr uint32_t kZeroFua = 1u << 0;
inline constexpr uint32_t kZeroMayTrim = 1u
                                         << 1;  // client did not send NO_HOLE
inline constexpr uint32_t kZeroFast = 1u << 2;  // fail (ENOTSUP) if slow

class Backend {
 public:
  virtual ~Backend() = default;

  virtual uint64_t Size() const = 0;
  virtual BackendCapabilities Capabilities() const = 0;

  // Reads buffer.size() bytes at `offset` and appends runs tiling them, in
  // order, to `runs`. Bytes of hole runs in `buffer` may be left untouched.
  // On failure, the runs appended so far tile the prefix that was read
  // (possibly none): the read failed at `offset` plus their total, which
  // the server reports to the client as the error offset, after that
  // prefix's data.
  virtual absl::Status Read(uint64_t offset, absl::Span<uint8_t> buffer,
                            std::vector<ReadRun>* runs) = 0;
  virtual absl::Status Write(uint64_t offset, absl::Span<const uint8_t> data,
                             bool fua) = 0;
  virtual absl::Status Flush() = 0;
  virtual absl::Status Trim(uint64_t offset, uint64_t length, bool fua) = 0;
  virtual absl::Status Zero(uint64_t offset, uint64_t length,
                            uint32_t flags) = 0;
  virtual absl::Status Cache(uint64_t offset, uint64_t length) = 0;
  // Appends consecutive extents from `offset`, at most `max_extents`, with
  // flags kStateHole|kStateZero, covering at least one byte and at most
  // up to the end of the export. Extents may stop before offset + length.
  virtual absl::Status BlockStatus(uint64_t offset, uint64_t length,
                                   size_t max_extents,
                                   std::vector<Extent>* extents) = 0;
};

// An ExportInfo describing `backend` (size and capabilities).
ExportInfo MakeExportInfo(std::string name, std::string description,
                          const Backend& backend);

}  // namespace nbd

#endif  // NBD_ADAPTERS_SERVER_BACKEND_H_
