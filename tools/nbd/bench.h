// `nbd bench URI`: keeps --qd requests of --bs bytes in flight on each of
// --connections connections for --seconds, then reports operations per
// second, MiB/s, the client's CPU time per operation (getrusage user+sys of
// the whole process, divided by the operations) and the adapters' system
// calls per operation (SyscallCounters).
#ifndef NBD_TOOLS_NBD_BENCH_H_
#define NBD_TOOLS_NBD_BENCH_H_

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "tools/nbd/open.h"

namespace nbd::tool {

struct BenchOptions {
  std::string uri;
  bool write = false;  // --op write: WRITEs of a non-zero pattern
  uint64_t block_size = 4096;
  size_t queue_depth = 16;  // in flight per connection
  absl::Duration duration = absl::Seconds(10);
  size_t connections = 1;
  Adapter adapter = Adapter::kIoUring;
  bool random = false;  // random block-aligned offsets instead of sequential
  absl::Duration timeout = absl::Seconds(30);
  bool debug = false;
};

struct BenchResult {
  Adapter adapter = Adapter::kIoUring;  // the adapter actually used
  size_t connections = 0;               // the connections actually used
  uint64_t ops = 0;
  uint64_t bytes = 0;
  double seconds = 0;
  double ops_per_sec = 0;
  double mib_per_sec = 0;
  double cpu_us_per_op = 0;
  double syscalls_per_op = 0;
};

absl::StatusOr<BenchResult> RunBench(const BenchOptions& options);

// The result as one JSON object (one line).
std::string BenchJson(const BenchOptions& options, const BenchResult& result);

}  // namespace nbd::tool

#endif  // NBD_TOOLS_NBD_BENCH_H_
