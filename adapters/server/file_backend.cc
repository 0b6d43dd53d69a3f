#include "adapters/server/file_backend.h"

#include <fcntl.h>
#include <linux/falloc.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "protocol/status.h"

namespace nbd {
namespace {

absl::Status Errno(int e, absl::string_view what) {
  return ErrnoStatus(e, absl::StrCat(what, ": ", std::strerror(e)));
}

bool Unsupported(int e) { return e == EOPNOTSUPP || e == ENOSYS; }

// Appends `run`, merging it into the previous one of the same kind.
void AddRun(std::vector<ReadRun>* runs, ReadRun run) {
  if (run.length == 0) return;
  if (!runs->empty() && runs->back().hole == run.hole) {
    runs->back().length += run.length;
  } else {
    runs->push_back(run);
  }
}

}  // namespace

absl::StatusOr<std::unique_ptr<FileBackend>> FileBackend::Open(
    const std::string& path, bool read_only) {
  const int fd =
      ::open(path.c_str(), (read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC);
  if (fd < 0) return Errno(errno, absl::StrCat("open ", path));
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    const int e = errno;
    ::close(fd);
    return Errno(e, absl::StrCat("fstat ", path));
  }
  uint64_t size = static_cast<uint64_t>(st.st_size);
  if (S_ISBLK(st.st_mode)) {
    const off_t end = ::lseek(fd, 0, SEEK_END);
    if (end < 0) {
      const int e = errno;
      ::close(fd);
      return Errno(e, absl::StrCat("lseek ", path));
    }
    size = static_cast<uint64_t>(end);
  }
  return std::unique_ptr<FileBackend>(new FileBackend(fd, size, read_only));
}

FileBackend::FileBackend(int fd, uint64_t size, bool read_only)
    : fd_(fd), size_(size), read_only_(read_only) {}

FileBackend::~FileBackend() { ::close(fd_); }

BackendCapabilities FileBackend::Capabilities() const {
  BackendCapabilities c;
  c.read_only = read_only_;
  c.can_flush = c.can_fua = c.can_trim = c.can_zero = c.can_fast_zero = true;
  c.can_cache = c.can_multi_conn = c.can_extents = true;
  return c;
}

absl::Status FileBackend::CheckWrite(uint64_t offset, uint64_t length) const {
  if (read_only_) return ErrnoStatus(EPERM, "read-only export");
  if (offset > size_ || length > size_ - offset) {
    return ErrnoStatus(ENOSPC, "request runs past the end of the export");
  }
  return absl::OkStatus();
}

absl::StatusOr<ReadRun> FileBackend::RunAt(uint64_t offset,
                                           uint64_t end) const {
  const off_t data = ::lseek(fd_, static_cast<off_t>(offset), SEEK_DATA);
  if (data < 0) {
    if (errno == ENXIO) return ReadRun{end - offset, true};  // hole to EOF
    if (errno == EINVAL || Unsupported(errno)) {
      return ReadRun{end - offset, false};  // no hole support: all data
    }
    return Errno(errno, "lseek(SEEK_DATA)");
  }
  if (static_cast<uint64_t>(data) > offset) {
    return ReadRun{std::min<uint64_t>(data, end) - offset, true};
  }
  const off_t hole = ::lseek(fd_, static_cast<off_t>(offset), SEEK_HOLE);
  if (hole < 0) return Errno(errno, "lseek(SEEK_HOLE)");
  return ReadRun{std::min<uint64_t>(hole, end) - offset, false};
}

absl::Status FileBackend::Read(uint64_t offset, absl::Span<uint8_t> buffer,
                               std::vector<ReadRun>* runs) {
  if (offset > size_ || buffer.size() > size_ - offset) {
    return ErrnoStatus(EINVAL, "read past the end of the export");
  }
  const uint64_t end = offset + buffer.size();
  uint64_t pos = offset;
  while (pos < end) {
    absl::StatusOr<ReadRun> run = RunAt(pos, end);
    if (!run.ok()) return run.status();
    if (run->length == 0) run->length = end - pos;  // defensive
    if (!run->hole) {
      uint64_t done = 0;
      while (done < run->length) {
        const ssize_t n =
            ::pread(fd_, buffer.data() + (pos - offset) + done,
                    run->length - done, static_cast<off_t>(pos + done));
        if (n < 0) {
          if (errno == EINTR) continue;
          const absl::Status error = Errno(errno, "pread");
          // Report what was read, so the error names the failing offset.
          AddRun(runs, {done, false});
          return error;
        }
        if (n == 0) {  // the file shrank: the rest reads as zeros
          std::memset(buffer.data() + (pos - offset) + done, 0,
                      run->length - done);
          break;
        }
        done += static_cast<uint64_t>(n);
      }
    }
    AddRun(runs, *run);
    pos += run->length;
  }
  return absl::OkStatus();
}

absl::Status FileBackend::Write(uint64_t offset, absl::Span<const uint8_t> data,
                                bool fua) {
  if (absl::Status s = CheckWrite(offset, data.size()); !s.ok()) return s;
  size_t done = 0;
  while (done < data.size()) {
    const ssize_t n = ::pwrite(fd_, data.data() + done, data.size() - done,
                               static_cast<off_t>(offset + done));
    if (n < 0) {
      if (errno == EINTR) continue;
      return Errno(errno, "pwrite");
    }
    done += static_cast<size_t>(n);
  }
  return fua ? Sync() : absl::OkStatus();
}

absl::Status FileBackend::Flush() { return Sync(); }

absl::Status FileBackend::Sync() {
  if (::fdatasync(fd_) != 0) return Errno(errno, "fdatasync");
  syncs_.fetch_add(1, std::memory_order_relaxed);
  return absl::OkStatus();
}

absl::Status FileBackend::WriteZeros(uint64_t offset, uint64_t length) {
  static const uint8_t kZeros[64 * 1024] = {};
  while (length > 0) {
    const size_t n =
        static_cast<size_t>(std::min<uint64_t>(length, sizeof(kZeros)));
    if (absl::Status s = Write(offset, absl::MakeConstSpan(kZeros, n), false);
        !s.ok()) {
      return s;
    }
    offset += n;
    length -= n;
  }
  return absl::OkStatus();
}

absl::Status FileBackend::Trim(uint64_t offset, uint64_t length, bool fua) {
  if (absl::Status s = CheckWrite(offset, length); !s.ok()) return s;
  if (length == 0) return absl::OkStatus();
  if (::fallocate(fd_, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                  static_cast<off_t>(offset),
                  static_cast<off_t>(length)) != 0 &&
      !Unsupported(errno)) {
    return Errno(errno, "fallocate(PUNCH_HOLE)");
  }
  // TRIM is advisory: where holes cannot be punched, nothing happens.
  return fua ? Sync() : absl::OkStatus();
}

absl::Status FileBackend::Zero(uint64_t offset, uint64_t length,
                               uint32_t flags) {
  if (absl::Status s = CheckWrite(offset, length); !s.ok()) return s;
  if (length == 0) return absl::OkStatus();
  const off_t off = static_cast<off_t>(offset);
  const off_t len = static_cast<off_t>(length);
  bool done = false;
  if (flags & kZeroMayTrim) {
    if (::fallocate(fd_, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, off,
                    len) == 0) {
      done = true;
    } else if (!Unsupported(errno)) {
      return Errno(errno, "fallocate(PUNCH_HOLE)");
    }
  }
  if (!done) {
    if (::fallocate(fd_, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, off,
                    len) == 0) {
      done = true;
    } else if (!Unsupported(errno)) {
      return Errno(errno, "fallocate(ZERO_RANGE)");
    }
  }
  if (!done) {
    if (flags & kZeroFast) {
      return ErrnoStatus(ENOTSUP, "no fast way to write zeroes here");
    }
    if (absl::Status s = WriteZeros(offset, length); !s.ok()) return s;
  }
  return (flags & kZeroFua) ? Sync() : absl::OkStatus();
}

absl::Status FileBackend::Cache(uint64_t offset, uint64_t length) {
  const int e =
      ::posix_fadvise(fd_, static_cast<off_t>(offset),
                      static_cast<off_t>(length), POSIX_FADV_WILLNEED);
  if (e != 0) return Errno(e, "posix_fadvise");
  return absl::OkStatus();
}

absl::Status FileBackend::BlockStatus(uint64_t offset, uint64_t length,
                                      size_t max_extents,
                                      std::vector<Extent>* extents) {
  if (offset > size_ || length > size_ - offset || length == 0 ||
      max_extents == 0) {
    return ErrnoStatus(EINVAL, "bad block status range");
  }
  const uint64_t end = offset + length;
  const size_t first = extents->size();
  uint64_t pos = offset;
  while (pos < end && extents->size() - first < max_extents) {
    absl::StatusOr<ReadRun> run = RunAt(pos, end);
    if (!run.ok()) return run.status();
    if (run->length == 0) run->length = end - pos;
    const uint64_t flags = run->hole ? (kStateHole | kStateZero) : 0;
    if (extents->size() > first && extents->back().flags == flags) {
      extents->back().length += run->length;
    } else {
      extents->push_back({run->length, flags});
    }
    pos += run->length;
  }
  return absl::OkStatus();
}

}  // namespace nbd
