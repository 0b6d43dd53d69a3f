// `nbd copy SRC DST`: copies an NBD export, a local file or stdin to an NBD
// export, a local file, stdout or `null:`, like libnbd's nbdcopy.
//
// How it moves bytes: the range is cut into requests of --request-size
// bytes; up to --requests of them are in flight on each of --connections
// lanes. A data request reads into a buffer and writes that same buffer
// (the core references it, it never copies it). A local file is read on
// a thread of its own (FileReader), overlapping the network I/O that the
// loop thread drives; buffers come from huge pages (BufferPool). When the
// source can say where its zeros are (NBD base:allocation, SEEK_HOLE in a
// file), zero runs are not read at all: the destination gets WRITE_ZEROES
// (NBD), a punched hole or nothing (a fresh file, null:). A data buffer
// that turns out to be all zeros is handled the same way.
#ifndef NBD_TOOLS_NBD_COPY_H_
#define NBD_TOOLS_NBD_COPY_H_

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "tools/nbd/open.h"

namespace nbd::tool {

struct CopyOptions {
  std::string source;       // NBD URI, path or "-"
  std::string destination;  // NBD URI, path, "-" or "null:"
  size_t connections = 4;
  size_t requests = 64;               // in flight per connection
  uint64_t request_size = 256 << 10;  // clamped to the servers' limits
  Adapter adapter = Adapter::kIoUring;
  bool flush = false;
  bool progress = false;  // draw a progress bar on stderr
  absl::Duration timeout = absl::Seconds(30);
  bool debug = false;
};

// What a copy did, for tests and --debug.
struct CopyStats {
  uint64_t size = 0;   // bytes covered
  uint64_t reads = 0;  // read requests to the source
  uint64_t bytes_read = 0;
  uint64_t writes = 0;         // data writes to the destination
  uint64_t zero_requests = 0;  // Zero() calls on the destination
  uint64_t bytes_zero = 0;     // bytes handled as zeros (not written as data)
  uint64_t block_status = 0;   // extent queries to the source
  Adapter adapter = Adapter::kIoUring;  // the adapter actually used
};

// Runs one copy. Errors are ready for the "nbd: " line: they name the
// endpoint (URI or path), the operation, the offset and the reason.
absl::StatusOr<CopyStats> RunCopy(const CopyOptions& options);

}  // namespace nbd::tool

#endif  // NBD_TOOLS_NBD_COPY_H_
