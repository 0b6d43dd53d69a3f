#include "tools/nbd/copy_endpoints.h"

#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <map>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "protocol/status.h"
#include "tools/nbd/file_reader.h"

namespace nbd::tool {
namespace {

absl::Status Errno(absl::string_view what) {
  return ErrnoStatus(errno, absl::StrCat(what, ": ", strerror(errno)));
}

absl::Status Unsupported() { return ErrnoStatus(ENOTSUP, "not supported"); }

// ---- NBD --------------------------------------------------------------------

class NbdSource : public Source {
 public:
  explicit NbdSource(Export* exp) : exp_(exp) {}
  const std::string& name() const override { return exp_->uri(); }
  std::optional<uint64_t> size() const override { return exp_->size(); }
  size_t lanes() const override { return exp_->connections(); }
  uint64_t max_request() const override { return exp_->info().max_payload(); }
  bool has_extents() const override { return exp_->info().can_block_status(); }

  void Extents(size_t lane, uint64_t offset, uint64_t length,
               SourceExtentsDone done) override {
    auto on_extents = [done](const absl::Status& s, uint64_t at,
                             const std::vector<Extent>& extents) {
      std::vector<SourceExtent> out;
      out.reserve(extents.size());
      for (const Extent& e : extents) {
        out.push_back({e.length, (e.flags & kStateZero) != 0,
                       (e.flags & kStateHole) != 0});
      }
      done(s, at, std::move(out));
    };
    absl::Status s = exp_->BlockStatus(lane, offset, length, on_extents);
    if (!s.ok()) done(s, offset, {});
  }

  void Read(size_t lane, uint64_t offset, absl::Span<uint8_t> buffer,
            std::function<void(const absl::Status&, size_t)> done) override {
    size_t n = buffer.size();
    absl::Status s = exp_->Read(
        lane, offset, buffer,
        [done, n](const absl::Status& st) { done(st, st.ok() ? n : 0); });
    if (!s.ok()) done(s, 0);
  }

 private:
  Export* exp_;
};

class NbdSink : public Sink {
 public:
  explicit NbdSink(Export* exp) : exp_(exp) {}
  const std::string& name() const override { return exp_->uri(); }
  size_t lanes() const override { return exp_->connections(); }
  uint64_t max_request() const override { return exp_->info().max_payload(); }
  bool can_zero() const override { return exp_->info().can_zero(); }

  absl::Status Start(std::optional<uint64_t> size) override {
    if (exp_->info().is_read_only()) {
      return ErrnoStatus(EPERM, "the export is read-only");
    }
    if (size.has_value() && *size > exp_->size()) {
      return ErrnoStatus(
          ENOSPC, absl::StrCat("the destination (", exp_->size(),
                               " bytes) is smaller than the source (", *size,
                               " bytes)"));
    }
    return absl::OkStatus();
  }

  void Write(size_t lane, uint64_t offset, absl::Span<const uint8_t> data,
             Done done) override {
    absl::Status s = exp_->Write(lane, offset, data, 0, done);
    if (!s.ok()) done(s);
  }

  void Zero(size_t lane, uint64_t offset, uint64_t length, bool allocate,
            Done done) override {
    if (!can_zero()) return done(Unsupported());
    // No FAST_ZERO: our fallback (zero-filled WRITEs) is never faster than
    // whatever the server does for a slow WRITE_ZEROES, so it would only
    // cost an extra round trip. NO_HOLE keeps allocated zeros allocated,
    // as they were in the source; otherwise the server may punch a hole.
    uint16_t flags = allocate ? kCmdFlagNoHole : 0;
    absl::Status s = exp_->WriteZeroes(lane, offset, length, flags, done);
    if (!s.ok()) done(s);
  }

  void Flush(Done done) override {
    if (!exp_->info().can_flush()) return done(absl::OkStatus());
    // With multi-conn one flush covers every connection's writes; flushing
    // each is also correct without it, and cheap.
    auto left = std::make_shared<size_t>(exp_->connections());
    auto first_error = std::make_shared<absl::Status>();
    for (size_t i = 0; i < exp_->connections(); ++i) {
      auto one = [left, first_error, done](const absl::Status& s) {
        if (!s.ok() && first_error->ok()) *first_error = s;
        if (--*left == 0) done(*first_error);
      };
      absl::Status s = exp_->Flush(i, one);
      if (!s.ok()) one(s);
    }
  }

  absl::Status Finish(uint64_t) override { return absl::OkStatus(); }

 private:
  Export* exp_;
};

// ---- Local files ------------------------------------------------------------

class FileSource : public Source {
 public:
  FileSource(std::string name, int fd, bool own, uint64_t size, bool regular)
      : name_(std::move(name)),
        fd_(fd),
        own_(own),
        size_(size),
        regular_(regular),
        reader_(std::make_unique<FileReader>(fd)) {}
  ~FileSource() override {
    reader_.reset();  // stops reading before the fd goes
    if (own_) ::close(fd_);
  }
  const std::string& name() const override { return name_; }
  std::optional<uint64_t> size() const override { return size_; }
  bool has_extents() const override { return regular_; }

  // SEEK_DATA/SEEK_HOLE, like nbdcopy: one extent per call. (lseek moves
  // the file offset, which the reader thread's preads do not use.)
  void Extents(size_t, uint64_t offset, uint64_t length,
               SourceExtentsDone done) override {
    uint64_t end = std::min(offset + length, size_);
    off_t data = ::lseek(fd_, static_cast<off_t>(offset), SEEK_DATA);
    if (data < 0 && errno != ENXIO) {
      // No SEEK_DATA here: all data.
      return done(absl::OkStatus(), offset, {{end - offset, false, false}});
    }
    uint64_t data_at = data < 0 ? end : std::min<uint64_t>(data, end);
    if (data_at > offset) {
      return done(absl::OkStatus(), offset, {{data_at - offset, true, true}});
    }
    off_t hole = ::lseek(fd_, static_cast<off_t>(offset), SEEK_HOLE);
    uint64_t hole_at = hole < 0 ? end : std::min<uint64_t>(hole, end);
    if (hole_at <= offset) hole_at = end;
    done(absl::OkStatus(), offset, {{hole_at - offset, false, false}});
  }

  // On the reader thread, so the loop thread keeps the sockets busy
  // meanwhile; the callback runs from Reap().
  void Read(size_t, uint64_t offset, absl::Span<uint8_t> buffer,
            std::function<void(const absl::Status&, size_t)> done) override {
    reader_->Read(offset, buffer, std::move(done));
  }
  void Kick() override { reader_->Kick(); }
  size_t pending_reads() const override { return reader_->pending(); }
  size_t Reap(bool wait) override {
    return wait ? reader_->Wait() : reader_->Reap();
  }

 private:
  std::string name_;
  int fd_;
  bool own_;
  uint64_t size_;
  bool regular_;
  std::unique_ptr<FileReader> reader_;
};

// A pipe, a terminal or a character device: read in order until EOF.
// Synchronously, on the loop thread: a reader thread would read ahead past
// end of file, and on a terminal a read after ^D waits for more input.
class StreamSource : public Source {
 public:
  StreamSource(std::string name, int fd, bool own)
      : name_(std::move(name)), fd_(fd), own_(own) {}
  ~StreamSource() override {
    if (own_) ::close(fd_);
  }
  const std::string& name() const override { return name_; }
  std::optional<uint64_t> size() const override { return std::nullopt; }

  void Read(size_t, uint64_t, absl::Span<uint8_t> buffer,
            std::function<void(const absl::Status&, size_t)> done) override {
    size_t got = 0;
    while (got < buffer.size()) {
      ssize_t r = ::read(fd_, buffer.data() + got, buffer.size() - got);
      if (r < 0 && errno == EINTR) continue;
      if (r < 0) return done(Errno("read"), 0);
      if (r == 0) break;
      got += static_cast<size_t>(r);
    }
    done(absl::OkStatus(), got);
  }

 private:
  std::string name_;
  int fd_;
  bool own_;
};

absl::Status WriteAll(int fd, const uint8_t* data, size_t length,
                      std::optional<uint64_t> offset) {
  size_t done = 0;
  while (done < length) {
    ssize_t r = offset.has_value()
                    ? ::pwrite(fd, data + done, length - done,
                               static_cast<off_t>(*offset + done))
                    : ::write(fd, data + done, length - done);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return Errno(offset.has_value() ? "pwrite" : "write");
    done += static_cast<size_t>(r);
  }
  return absl::OkStatus();
}

class FileSink : public Sink {
 public:
  FileSink(std::string name, int fd, bool regular)
      : name_(std::move(name)), fd_(fd), regular_(regular) {}
  ~FileSink() override { ::close(fd_); }
  const std::string& name() const override { return name_; }
  // A regular file was truncated to 0 by open(): every byte not written
  // is a hole that reads as zeros.
  bool zeros_are_free() const override { return regular_; }
  bool can_zero() const override { return true; }

  absl::Status Start(std::optional<uint64_t> size) override {
    if (regular_ && size.has_value() &&
        ::ftruncate(fd_, static_cast<off_t>(*size)) != 0) {
      return Errno("ftruncate");
    }
    return absl::OkStatus();
  }

  void Write(size_t, uint64_t offset, absl::Span<const uint8_t> data,
             Done done) override {
    done(WriteAll(fd_, data.data(), data.size(), offset));
  }

  void Zero(size_t, uint64_t offset, uint64_t length, bool allocate,
            Done done) override {
    int mode = allocate ? FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE
                        : FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE;
    if (::fallocate(fd_, mode, static_cast<off_t>(offset),
                    static_cast<off_t>(length)) == 0) {
      return done(absl::OkStatus());
    }
    // Block devices and file systems without hole punching: write zeros.
    if (errno == EOPNOTSUPP || errno == ENODEV || errno == EINVAL) {
      return done(Unsupported());
    }
    done(Errno("fallocate"));
  }

  void Flush(Done done) override {
    done(::fsync(fd_) == 0 ? absl::OkStatus() : Errno("fsync"));
  }

  absl::Status Finish(uint64_t size) override {
    // A stream source's trailing zeros were skipped, not written.
    struct stat st;
    if (regular_ && ::fstat(fd_, &st) == 0 &&
        static_cast<uint64_t>(st.st_size) < size &&
        ::ftruncate(fd_, static_cast<off_t>(size)) != 0) {
      return Errno("ftruncate");
    }
    return absl::OkStatus();
  }

 private:
  std::string name_;
  int fd_;
  bool regular_;
};

// stdout: writes must happen in offset order, but NBD reads complete in any
// order, so completed pieces wait here (holding their buffers, which is
// bounded by the requests in flight) until the gap before them is filled.
class StreamSink : public Sink {
 public:
  StreamSink(std::string name, int fd) : name_(std::move(name)), fd_(fd) {}
  const std::string& name() const override { return name_; }
  // Zero() writes zeros in order itself, without a buffer per request.
  bool can_zero() const override { return true; }
  absl::Status Start(std::optional<uint64_t>) override {
    return absl::OkStatus();
  }

  void Write(size_t, uint64_t offset, absl::Span<const uint8_t> data,
             Done done) override {
    waiting_.emplace(offset, Piece{data, data.size(), std::move(done)});
    Pump();
  }
  void Zero(size_t, uint64_t offset, uint64_t length, bool,
            Done done) override {
    waiting_.emplace(offset, Piece{{}, length, std::move(done)});
    Pump();
  }
  void Flush(Done done) override { done(absl::OkStatus()); }
  absl::Status Finish(uint64_t) override {
    return waiting_.empty() ? absl::OkStatus()
                            : ErrnoStatus(EIO, "output has a gap");
  }

 private:
  struct Piece {
    absl::Span<const uint8_t> data;  // empty: zeros
    uint64_t length;
    Done done;
  };

  void Pump() {
    while (!waiting_.empty() && waiting_.begin()->first == next_) {
      Piece piece = std::move(waiting_.begin()->second);
      waiting_.erase(waiting_.begin());
      absl::Status s;
      if (!piece.data.empty()) {
        s = WriteAll(fd_, piece.data.data(), piece.length, std::nullopt);
      } else {
        static const std::vector<uint8_t> zeros(256 * 1024);
        for (uint64_t left = piece.length; left > 0 && s.ok();) {
          size_t n = std::min<uint64_t>(left, zeros.size());
          s = WriteAll(fd_, zeros.data(), n, std::nullopt);
          left -= n;
        }
      }
      next_ += piece.length;
      piece.done(s);
    }
  }

  std::string name_;
  int fd_;
  uint64_t next_ = 0;
  std::map<uint64_t, Piece> waiting_;
};

class NullSink : public Sink {
 public:
  const std::string& name() const override { return name_; }
  bool discards() const override { return true; }
  bool zeros_are_free() const override { return true; }
  absl::Status Start(std::optional<uint64_t>) override {
    return absl::OkStatus();
  }
  void Write(size_t, uint64_t, absl::Span<const uint8_t>, Done done) override {
    done(absl::OkStatus());
  }
  void Flush(Done done) override { done(absl::OkStatus()); }
  absl::Status Finish(uint64_t) override { return absl::OkStatus(); }

 private:
  std::string name_ = "null:";
};

// Size of a regular file or block device; nullopt for anything else.
std::optional<uint64_t> SeekableSize(int fd, bool* regular) {
  struct stat st;
  *regular = false;
  if (::fstat(fd, &st) != 0) return std::nullopt;
  if (S_ISREG(st.st_mode)) {
    *regular = true;
    return static_cast<uint64_t>(st.st_size);
  }
  uint64_t size = 0;
  if (S_ISBLK(st.st_mode) && ::ioctl(fd, BLKGETSIZE64, &size) == 0) {
    return size;
  }
  return std::nullopt;
}

std::unique_ptr<Source> SourceForFd(std::string name, int fd, bool own) {
  bool regular = false;
  if (auto size = SeekableSize(fd, &regular)) {
    return std::make_unique<FileSource>(std::move(name), fd, own, *size,
                                        regular);
  }
  return std::make_unique<StreamSource>(std::move(name), fd, own);
}

}  // namespace

void Source::Extents(size_t, uint64_t offset, uint64_t,
                     SourceExtentsDone done) {
  done(Unsupported(), offset, {});
}

void Sink::Zero(size_t, uint64_t, uint64_t, bool, Done done) {
  done(Unsupported());
}

bool IsNbdUri(std::string_view arg) {
  size_t colon = arg.find(':');
  if (colon == std::string_view::npos) return false;
  std::string scheme = absl::AsciiStrToLower(std::string(arg.substr(0, colon)));
  return scheme == "nbd" || scheme == "nbds" ||
         absl::StartsWith(scheme, "nbd+") || absl::StartsWith(scheme, "nbds+");
}

absl::StatusOr<std::unique_ptr<Source>> OpenSource(std::string_view arg,
                                                   Engine& engine,
                                                   size_t connections) {
  if (IsNbdUri(arg)) {
    absl::StatusOr<Export*> exp = engine.Open(arg, connections);
    if (!exp.ok()) return exp.status();
    return std::make_unique<NbdSource>(*exp);
  }
  if (arg == "-") return SourceForFd("stdin", STDIN_FILENO, false);
  std::string path(arg);
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Errno(absl::StrCat("open ", path));
  return SourceForFd(path, fd, true);
}

absl::StatusOr<std::unique_ptr<Sink>> OpenSink(std::string_view arg,
                                               Engine& engine,
                                               size_t connections) {
  if (IsNbdUri(arg)) {
    absl::StatusOr<Export*> exp = engine.Open(arg, connections);
    if (!exp.ok()) return exp.status();
    return std::make_unique<NbdSink>(*exp);
  }
  if (arg == "null:") return std::make_unique<NullSink>();
  if (arg == "-") return std::make_unique<StreamSink>("stdout", STDOUT_FILENO);
  std::string path(arg);
  // An existing device (a block device, /dev/null) is written in place;
  // anything else becomes a fresh regular file, so holes come for free.
  struct stat st;
  bool regular = ::stat(path.c_str(), &st) != 0 || S_ISREG(st.st_mode);
  int flags = O_WRONLY | O_CLOEXEC | (regular ? O_CREAT | O_TRUNC : 0);
  int fd = ::open(path.c_str(), flags, 0644);
  if (fd < 0) return Errno(absl::StrCat("open ", path));
  return std::make_unique<FileSink>(path, fd, regular);
}

}  // namespace nbd::tool
