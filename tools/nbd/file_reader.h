// Reads a local file on a thread of its own, so that `nbd copy` overlaps
// file reads with the network I/O that the loop thread drives (the copy
// loop is single-threaded; a synchronous pread there stalls every socket
// for as long as the read takes).
//
// The caller queues reads into its own buffers; the reader thread preads
// straight into them (no copy: the WRITE that follows references the same
// buffer), one after the other in queue order. Callbacks never run on the
// reader thread: the loop thread runs them from Reap()/Wait(), so they may
// touch the copier's state and issue more commands without locks.
//
//   FileReader reader(fd);
//   reader.Read(offset, buffer, [](const absl::Status& s, size_t n) {...});
//   while (reader.pending() > 0) reader.Wait();
#ifndef NBD_TOOLS_NBD_FILE_READER_H_
#define NBD_TOOLS_NBD_FILE_READER_H_

#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>

#include "absl/status/status.h"
#include "absl/types/span.h"

namespace nbd::tool {

// Fills `buffer` from `offset` with pread, retrying short reads and EINTR.
// EIO "unexpected end of file (truncated?)" if the file ends first.
absl::Status PreadFully(int fd, uint64_t offset, absl::Span<uint8_t> buffer);

class FileReader {
 public:
  // Status and bytes read (the whole buffer on success, 0 on error).
  using Done = std::function<void(const absl::Status&, size_t)>;

  // `fd` is borrowed and must outlive the reader.
  explicit FileReader(int fd);
  // Finishes the read in progress and drops the queued ones: their
  // callbacks never run, and their buffers are no longer touched once the
  // destructor returns.
  ~FileReader();
  FileReader(const FileReader&) = delete;
  FileReader& operator=(const FileReader&) = delete;

  // Queues a read; `done` runs later from Reap() or Wait(). The reader
  // starts on it by itself if it is busy, else only at the next Kick() or
  // Wait(): one wakeup per batch of reads, not one per read.
  void Read(uint64_t offset, absl::Span<uint8_t> buffer, Done done);
  // Wakes the reader if it sleeps while reads are queued. Call it before
  // the loop thread waits for something else (the network).
  void Kick();
  // Reads queued whose callback has not run yet.
  size_t pending() const { return pending_; }
  // Runs the callbacks of the reads that finished; returns how many.
  size_t Reap();
  // Like Reap(), but first kicks the reader and waits until at least one read
  // finished (returns 0 at once if nothing is pending). File reads have no
  // timeout, just as a synchronous pread has none.
  size_t Wait();

 private:
  struct Job {
    uint64_t offset;
    absl::Span<uint8_t> buffer;
    Done done;
    absl::Status status;
  };
  void Loop();

  const int fd_;
  size_t pending_ = 0;  // loop thread only
  std::mutex mu_;
  std::condition_variable work_;      // the reader waits for jobs
  std::condition_variable finished_;  // Wait() waits for results
  std::deque<Job> queue_;             // guarded by mu_
  std::deque<Job> done_;              // guarded by mu_
  bool stop_ = false;                 // guarded by mu_
  bool sleeping_ = false;             // guarded by mu_: waits on work_
  std::thread thread_;                // last: starts after the rest exists
};

}  // namespace nbd::tool

#endif  // NBD_TOOLS_NBD_FILE_READER_H_
