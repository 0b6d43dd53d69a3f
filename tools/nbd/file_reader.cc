#include "tools/nbd/file_reader.h"

#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "protocol/status.h"

namespace nbd::tool {

absl::Status PreadFully(int fd, uint64_t offset, absl::Span<uint8_t> buffer) {
  size_t got = 0;
  while (got < buffer.size()) {
    ssize_t r = ::pread(fd, buffer.data() + got, buffer.size() - got,
                        static_cast<off_t>(offset + got));
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) {
      return ErrnoStatus(errno, absl::StrCat("pread: ", strerror(errno)));
    }
    if (r == 0) {
      return ErrnoStatus(EIO, "unexpected end of file (truncated?)");
    }
    got += static_cast<size_t>(r);
  }
  return absl::OkStatus();
}

FileReader::FileReader(int fd) : fd_(fd), thread_([this] { Loop(); }) {}

FileReader::~FileReader() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
    queue_.clear();
  }
  work_.notify_one();
  thread_.join();
}

void FileReader::Read(uint64_t offset, absl::Span<uint8_t> buffer, Done done) {
  ++pending_;
  std::lock_guard<std::mutex> lock(mu_);
  queue_.push_back({offset, buffer, std::move(done), absl::OkStatus()});
}

void FileReader::Kick() {
  bool wake;
  {
    std::lock_guard<std::mutex> lock(mu_);
    wake = sleeping_ && !queue_.empty();
  }
  if (wake) work_.notify_one();
}

void FileReader::Loop() {
  std::unique_lock<std::mutex> lock(mu_);
  while (true) {
    if (!stop_ && queue_.empty()) {
      sleeping_ = true;
      // A job queued meanwhile waits for Kick(): that is the batching.
      work_.wait(lock);
      sleeping_ = false;
      continue;  // recheck (spurious wakeups, jobs, stop)
    }
    if (stop_) return;
    // The job stays at the queue's head while it is read: the destructor
    // may clear the queue meanwhile, so copy what the read needs.
    Job& job = queue_.front();
    uint64_t offset = job.offset;
    absl::Span<uint8_t> buffer = job.buffer;
    lock.unlock();
    absl::Status s = PreadFully(fd_, offset, buffer);
    lock.lock();
    if (stop_) return;  // the destructor dropped the queue
    Job finished = std::move(queue_.front());
    queue_.pop_front();
    finished.status = std::move(s);
    bool first = done_.empty();
    done_.push_back(std::move(finished));
    if (first) finished_.notify_one();
  }
}

size_t FileReader::Reap() {
  std::deque<Job> batch;
  {
    std::lock_guard<std::mutex> lock(mu_);
    batch.swap(done_);
  }
  // Callbacks may queue more reads (they do not wait on the reader, so no
  // lock is held while they run).
  for (Job& job : batch) {
    --pending_;
    job.done(job.status, job.status.ok() ? job.buffer.size() : 0);
  }
  return batch.size();
}

size_t FileReader::Wait() {
  if (pending_ == 0) return 0;
  Kick();
  {
    std::unique_lock<std::mutex> lock(mu_);
    finished_.wait(lock, [this] { return !done_.empty(); });
  }
  return Reap();
}

}  // namespace nbd::tool
