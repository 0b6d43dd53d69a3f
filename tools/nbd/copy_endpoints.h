// The two ends of `nbd copy`: where bytes come from (an NBD export, a local
// file or block device, stdin) and where they go (an NBD export, a local
// file, stdout, or nowhere: `null:`).
//
// Every operation reports through a callback. NBD endpoints call it later,
// from Engine::Poll(); a local file source reads on its own thread and
// calls it later, from Source::Reap(); the other local ones call it before
// returning. The copier handles all of these, so it never assumes which.
#ifndef NBD_TOOLS_NBD_COPY_ENDPOINTS_H_
#define NBD_TOOLS_NBD_COPY_ENDPOINTS_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "tools/nbd/open.h"

namespace nbd::tool {

// Is this argument an NBD URI (as opposed to a path, `-` or `null:`)?
bool IsNbdUri(std::string_view arg);

// A run of the source: `zero` if it reads as zeros (NBD_STATE_ZERO, or a
// file hole), `hole` if it is also unallocated.
struct SourceExtent {
  uint64_t length = 0;
  bool zero = false;
  bool hole = false;
};
using SourceExtentsDone = std::function<void(
    const absl::Status&, uint64_t offset, std::vector<SourceExtent> extents)>;

class Source {
 public:
  virtual ~Source() = default;
  // For error messages: the URI, the path, or "stdin".
  virtual const std::string& name() const = 0;
  // nullopt for a stream (stdin, a pipe): read until end of file.
  virtual std::optional<uint64_t> size() const = 0;
  // Connections that may carry requests in parallel (lanes).
  virtual size_t lanes() const { return 1; }
  // Largest read the source takes in one request.
  virtual uint64_t max_request() const { return uint64_t{1} << 30; }
  // Whether Extents() says anything (NBD base:allocation, SEEK_HOLE).
  virtual bool has_extents() const { return false; }
  virtual void Extents(size_t lane, uint64_t offset, uint64_t length,
                       SourceExtentsDone done);
  // Fills `buffer` from `offset`. Streams fill it as far as they can and
  // report how much (less only at end of file); others report the whole
  // length or an error.
  virtual void Read(size_t lane, uint64_t offset, absl::Span<uint8_t> buffer,
                    std::function<void(const absl::Status&, size_t)> done) = 0;
  // Reads that complete outside Engine::Poll() (a file read on a thread of
  // its own) and whose callback has not run yet.
  virtual size_t pending_reads() const { return 0; }
  // Runs the callbacks of such reads that finished; with `wait`, first
  // waits for one if none has. Returns how many callbacks ran.
  virtual size_t Reap(bool /*wait*/) { return 0; }
  // Starts the reads issued since the last call (one wakeup per batch).
  virtual void Kick() {}
};

class Sink {
 public:
  virtual ~Sink() = default;
  virtual const std::string& name() const = 0;
  virtual size_t lanes() const { return 1; }
  virtual uint64_t max_request() const { return uint64_t{1} << 30; }
  // Called once before any write with the source size (nullopt: unknown).
  virtual absl::Status Start(std::optional<uint64_t> size) = 0;
  // `null:` drops what it gets. The source is still read (copying to null:
  // exists to test and measure the source), but nothing needs to look at
  // the data.
  virtual bool discards() const { return false; }
  // Regions known to read as zeros already (a freshly truncated file,
  // `null:`): zero runs need no request at all.
  virtual bool zeros_are_free() const { return false; }
  // Whether Zero() can do better than writing a zero-filled buffer.
  virtual bool can_zero() const { return false; }
  virtual void Write(size_t lane, uint64_t offset,
                     absl::Span<const uint8_t> data, Done done) = 0;
  // Makes [offset, offset+length) read as zeros. `allocate`: keep it
  // allocated (the source had allocated zeros). ENOTSUP: write zeros
  // instead.
  virtual void Zero(size_t lane, uint64_t offset, uint64_t length,
                    bool allocate, Done done);
  // Makes the written data durable (--flush).
  virtual void Flush(Done done) = 0;
  // After the last write: the final size (for streams, now known).
  virtual absl::Status Finish(uint64_t size) = 0;
};

// Opens SRC / DST as named on the command line. NBD URIs are opened on
// `engine` with `connections` connections.
absl::StatusOr<std::unique_ptr<Source>> OpenSource(std::string_view arg,
                                                   Engine& engine,
                                                   size_t connections);
absl::StatusOr<std::unique_ptr<Sink>> OpenSink(std::string_view arg,
                                               Engine& engine,
                                               size_t connections);

}  // namespace nbd::tool

#endif  // NBD_TOOLS_NBD_COPY_ENDPOINTS_H_
