#include "tools/nbd/copy.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "adapters/connect/uri.h"
#include "protocol/status.h"
#include "tools/nbd/args.h"
#include "tools/nbd/buffer_pool.h"
#include "tools/nbd/command.h"
#include "tools/nbd/copy_endpoints.h"
#include "tools/nbd/diag.h"
#include "tools/nbd/progress.h"
#include "tools/nbd/usage.h"

namespace nbd::tool {
namespace {

// Extents are asked for in windows this large (one BLOCK_STATUS each), and
// the next window is fetched once half of the current one is used up.
constexpr uint64_t kExtentWindow = uint64_t{256} << 20;
// One WRITE_ZEROES covers at most this much (well inside 32-bit lengths).
constexpr uint64_t kMaxZeroRequest = uint64_t{1} << 30;

bool IsZero(const uint8_t* p, size_t n) {
  // Check the first byte, then compare the buffer with itself shifted by
  // one: memcmp is vectorised, a byte loop is not.
  return n == 0 || (p[0] == 0 && std::memcmp(p, p + 1, n - 1) == 0);
}

class Copier {
 public:
  explicit Copier(const CopyOptions& options) : o_(options) {}
  absl::StatusOr<CopyStats> Run();

 private:
  struct Range {
    uint64_t offset;
    uint64_t length;
  };

  absl::Status Open();
  void Fill();
  bool StartItem(size_t lane);
  void StartData(size_t lane, uint64_t offset, uint64_t length);
  void StartZero(size_t lane, uint64_t offset, uint64_t length, bool allocate);
  void WriteZeroBuffer(size_t lane, uint64_t offset, uint64_t length);
  void MaybeQueryExtents();
  void Fail(const std::string& name, absl::string_view op, uint64_t offset,
            const absl::Status& s);
  // Engine::Poll/Drain failed: the server stopped answering.
  void WaitFailed(const absl::Status& s);
  bool AllIssued() const;
  bool Idle() const;
  uint8_t* GetBuffer() { return pool_->Get(); }
  void Release(uint8_t* buffer) { pool_->Release(buffer); }
  size_t SrcLane(size_t lane) const { return lane % src_->lanes(); }
  size_t DstLane(size_t lane) const { return lane % dst_->lanes(); }
  void Debug(std::string_view text) const;

  const CopyOptions& o_;
  // Buffers are declared before the engine so they are destroyed after it:
  // until the engine is gone the kernel may still receive into them.
  std::unique_ptr<BufferPool> pool_;
  std::vector<uint8_t> zeros_;  // source of zero-filled writes
  std::unique_ptr<Engine> engine_;
  std::unique_ptr<Source> src_;
  std::unique_ptr<Sink> dst_;
  std::unique_ptr<Progress> progress_;

  uint64_t request_size_ = 0;
  size_t lanes_ = 1;
  std::vector<size_t> busy_;  // items in flight per lane
  std::optional<uint64_t> size_;
  uint64_t cursor_ = 0;  // everything before it is issued
  bool eof_ = false;     // a stream source ended
  uint64_t done_bytes_ = 0;

  bool use_extents_ = false;
  std::deque<SourceExtent> extents_;  // known extents from cursor_ on
  uint64_t extents_end_ = 0;
  bool extents_pending_ = false;

  std::deque<Range> zero_fallback_;  // zeros to write as data
  absl::Status error_;
  CopyStats stats_;
};

void Copier::Debug(std::string_view text) const {
  if (o_.debug) {
    std::fprintf(stderr, "nbd: debug: copy: %s\n", std::string(text).c_str());
  }
}

void Copier::Fail(const std::string& name, absl::string_view op,
                  uint64_t offset, const absl::Status& s) {
  // The first error wins, except over "the connection has ended": that is
  // what a command issued after a connection died gets, and its callback
  // can run before the one carrying the cause (e.g. a timed-out write,
  // with the blocking adapter), so the cause replaces it.
  if (!error_.ok() &&
      (StatusErrno(error_) != ENOTCONN || StatusErrno(s) == ENOTCONN)) {
    return;
  }
  error_ = WithErrno(
      absl::Status(s.code(), absl::StrCat(name, ": ", op, " at offset ", offset,
                                          ": ", StatusText(s))),
      StatusErrno(s));
}

void Copier::WaitFailed(const absl::Status& s) {
  // A timeout names the server, the oldest command and its offset itself.
  if (StatusErrno(s) == ETIMEDOUT) {
    error_ = s;
  } else {
    error_ = absl::Status(s.code(),
                          absl::StrCat("waiting for replies: ", StatusText(s)));
  }
}

absl::Status Copier::Open() {
  absl::StatusOr<std::unique_ptr<Engine>> engine =
      Engine::Create({.adapter = o_.adapter,
                      .timeout = o_.timeout,
                      .debug = DebugLog(o_.debug),
                      .recv_readahead = ReadaheadFor(o_.request_size),
                      // The user's own command line, as with nbdcopy.
                      .uri_policy = adapters::UriPolicy::Trusted()});
  if (!engine.ok()) return engine.status();
  engine_ = std::move(*engine);
  stats_.adapter = engine_->adapter();

  auto src = OpenSource(o_.source, *engine_, o_.connections);
  if (!src.ok()) {
    return Named(o_.source, "open", src.status());
  }
  src_ = std::move(*src);
  auto dst = OpenSink(o_.destination, *engine_, o_.connections);
  if (!dst.ok()) {
    return Named(o_.destination, "open", dst.status());
  }
  dst_ = std::move(*dst);

  size_ = src_->size();
  if (absl::Status s = dst_->Start(size_); !s.ok()) {
    return absl::Status(s.code(),
                        absl::StrCat(dst_->name(), ": ", StatusText(s)));
  }
  request_size_ = std::max<uint64_t>(
      1, std::min({o_.request_size, src_->max_request(), dst_->max_request()}));
  pool_ = std::make_unique<BufferPool>(request_size_);
  lanes_ = std::max(src_->lanes(), dst_->lanes());
  busy_.assign(lanes_, 0);
  use_extents_ = size_.has_value() && src_->has_extents();
  Debug(absl::StrCat("size ", size_ ? absl::StrCat(*size_) : "unknown",
                     ", request size ", request_size_, ", lanes ", lanes_,
                     ", extents ", use_extents_ ? "yes" : "no"));
  progress_ = std::make_unique<Progress>(o_.progress, size_.value_or(0));
  return absl::OkStatus();
}

bool Copier::AllIssued() const {
  return zero_fallback_.empty() &&
         (eof_ || (size_.has_value() && cursor_ >= *size_));
}

bool Copier::Idle() const {
  if (extents_pending_) return false;
  for (size_t b : busy_) {
    if (b > 0) return false;
  }
  return true;
}

void Copier::Fill() {
  // Round robin, one item per lane per pass, so work spreads over the
  // connections instead of filling the first one.
  bool started = true;
  while (started && error_.ok()) {
    started = false;
    for (size_t lane = 0; lane < lanes_ && error_.ok(); ++lane) {
      if (busy_[lane] < o_.requests && StartItem(lane)) started = true;
    }
  }
}

bool Copier::StartItem(size_t lane) {
  if (!zero_fallback_.empty()) {
    Range& r = zero_fallback_.front();
    uint64_t n = std::min(r.length, request_size_);
    uint64_t at = r.offset;
    r.offset += n;
    r.length -= n;
    if (r.length == 0) zero_fallback_.pop_front();
    WriteZeroBuffer(lane, at, n);
    return true;
  }
  if (AllIssued()) return false;
  uint64_t at = cursor_;
  uint64_t n = request_size_;
  if (size_.has_value()) n = std::min(n, *size_ - at);
  if (use_extents_) {
    MaybeQueryExtents();
    if (extents_.empty()) return false;  // waiting for BLOCK_STATUS
    SourceExtent& e = extents_.front();
    if (e.zero) {
      n = std::min(e.length, kMaxZeroRequest);
    } else {
      n = std::min(e.length, request_size_);
    }
    bool zero = e.zero;
    bool allocate = !e.hole;
    e.length -= n;
    if (e.length == 0) extents_.pop_front();
    cursor_ += n;
    if (zero) {
      StartZero(lane, at, n, allocate);
    } else {
      StartData(lane, at, n);
    }
    return true;
  }
  cursor_ += n;
  StartData(lane, at, n);
  return true;
}

void Copier::StartData(size_t lane, uint64_t offset, uint64_t length) {
  uint8_t* buf = GetBuffer();
  ++busy_[lane];
  ++stats_.reads;
  src_->Read(
      SrcLane(lane), offset, absl::MakeSpan(buf, length),
      [this, lane, offset, length, buf](const absl::Status& s, size_t n) {
        if (!s.ok()) {
          Release(buf);
          --busy_[lane];
          return Fail(src_->name(), "read", offset, s);
        }
        stats_.bytes_read += n;
        if (n < length) {  // only a stream ends early, and reads in order
          eof_ = true;
          cursor_ = offset + n;
        }
        if (n == 0 || dst_->discards() || !error_.ok()) {
          done_bytes_ += n;
          Release(buf);
          --busy_[lane];
          return;
        }
        if ((dst_->can_zero() || dst_->zeros_are_free()) && IsZero(buf, n)) {
          Release(buf);
          --busy_[lane];
          return StartZero(lane, offset, n, false);
        }
        ++stats_.writes;
        dst_->Write(DstLane(lane), offset, absl::MakeConstSpan(buf, n),
                    [this, lane, offset, n, buf](const absl::Status& s) {
                      Release(buf);
                      --busy_[lane];
                      if (!s.ok())
                        return Fail(dst_->name(), "write", offset, s);
                      done_bytes_ += n;
                      progress_->Update(done_bytes_);
                    });
      });
}

void Copier::StartZero(size_t lane, uint64_t offset, uint64_t length,
                       bool allocate) {
  stats_.bytes_zero += length;
  if (dst_->zeros_are_free()) {
    done_bytes_ += length;
    return;
  }
  if (!dst_->can_zero()) {
    zero_fallback_.push_back({offset, length});
    return;
  }
  ++busy_[lane];
  ++stats_.zero_requests;
  dst_->Zero(DstLane(lane), offset, length, allocate,
             [this, lane, offset, length](const absl::Status& s) {
               --busy_[lane];
               if (StatusErrno(s) == ENOTSUP) {
                 zero_fallback_.push_back({offset, length});
               } else if (!s.ok()) {
                 Fail(dst_->name(), "write-zeroes", offset, s);
               } else {
                 done_bytes_ += length;
                 progress_->Update(done_bytes_);
               }
             });
}

void Copier::WriteZeroBuffer(size_t lane, uint64_t offset, uint64_t length) {
  if (zeros_.size() < length) zeros_.resize(request_size_);
  ++busy_[lane];
  ++stats_.writes;
  dst_->Write(DstLane(lane), offset, absl::MakeConstSpan(zeros_.data(), length),
              [this, lane, offset, length](const absl::Status& s) {
                --busy_[lane];
                if (!s.ok()) return Fail(dst_->name(), "write", offset, s);
                done_bytes_ += length;
              });
}

void Copier::MaybeQueryExtents() {
  if (extents_pending_ || extents_end_ >= *size_) return;
  if (!extents_.empty() && extents_end_ - cursor_ > kExtentWindow / 2) return;
  uint64_t at = extents_end_;
  uint64_t length = std::min(kExtentWindow, *size_ - at);
  extents_pending_ = true;
  ++stats_.block_status;
  src_->Extents(0, at, length,
                [this, at, length](const absl::Status& s, uint64_t offset,
                                   std::vector<SourceExtent> extents) {
                  extents_pending_ = false;
                  uint64_t total = 0;
                  for (const SourceExtent& e : extents) total += e.length;
                  if (!s.ok() || offset != at || total == 0) {
                    // Extents only save work; without them every byte is read.
                    Debug(absl::StrCat("no extents at ", at, ": ", s.ToString(),
                                       "; reading the range as data"));
                    extents.assign(1, SourceExtent{length, false, false});
                    total = length;
                  }
                  // Never beyond the window asked for.
                  uint64_t room = length;
                  for (SourceExtent& e : extents) {
                    e.length = std::min(e.length, room);
                    room -= e.length;
                    if (e.length > 0) extents_.push_back(e);
                  }
                  extents_end_ = at + (length - room);
                });
}

absl::StatusOr<CopyStats> Copier::Run() {
  if (absl::Status s = Open(); !s.ok()) return s;
  bool server_hung = false;
  while (true) {
    Fill();
    if (!error_.ok()) break;
    if (AllIssued() && Idle()) break;
    // File reads that finished while the loop waited for the network: their
    // WRITEs go out before the next wait.
    if (src_->Reap(false) > 0) continue;
    src_->Kick();  // read what Fill() issued while the network is waited for
    if (engine_->in_flight() == 0) {
      if (src_->pending_reads() == 0) {
        error_ = absl::InternalError("copy stalled (a bug)");
        break;
      }
      src_->Reap(true);  // nothing on the wire: wait for the file
      continue;
    }
    // The network wakes this loop often enough (every completion) that
    // finished file reads need no wakeup of their own; they are picked up
    // above after each Poll.
    if (absl::Status s = engine_->Poll(); !s.ok()) {
      WaitFailed(s);
      server_hung = true;
      break;
    }
  }
  uint64_t final_size = size_.value_or(cursor_);
  if (error_.ok() && o_.flush) {
    dst_->Flush([this](const absl::Status& s) {
      if (!s.ok()) Fail(dst_->name(), "flush", 0, s);
    });
    if (absl::Status s = engine_->Drain(); !s.ok()) {
      WaitFailed(s);
      server_hung = true;
    }
  }
  if (error_.ok()) {
    if (absl::Status s = dst_->Finish(final_size); !s.ok()) {
      Fail(dst_->name(), "finish", final_size, s);
    }
  }
  if (!server_hung) {
    // The work is done (or failed) either way; a server that is slow to
    // close only earns a debug note.
    engine_->Shutdown().IgnoreError();
  }
  if (!error_.ok()) return error_;
  progress_->Finish(done_bytes_);
  stats_.size = final_size;
  Debug(absl::StrCat("done: ", stats_.reads, " reads, ", stats_.writes,
                     " writes, ", stats_.zero_requests, " zero requests, ",
                     stats_.bytes_zero, " bytes as zeros, ",
                     stats_.block_status, " extent queries"));
  return stats_;
}

absl::StatusOr<uint64_t> ParseCount(const ParsedArgs& args,
                                    const std::string& name, uint64_t def,
                                    uint64_t max) {
  const std::string* v = args.Value(name);
  if (v == nullptr) return def;
  absl::StatusOr<uint64_t> n = ParseSize(*v);
  if (!n.ok() || *n == 0 || *n > max) {
    return absl::InvalidArgumentError(
        absl::StrCat("bad ", name, " '", *v, "' (1 to ", max, ")"));
  }
  return *n;
}

}  // namespace

absl::StatusOr<CopyStats> RunCopy(const CopyOptions& options) {
  Copier copier(options);
  return copier.Run();
}

int CopyCommand(const std::vector<std::string>& args, const GlobalOptions& g) {
  absl::StatusOr<ParsedArgs> parsed = ParseArgs(args, "copy");
  if (!parsed.ok())
    return UsageError(parsed.status().message(), UsageFor("copy"));
  if (parsed->positional.size() != 2) {
    return UsageError("copy needs SRC and DST", UsageFor("copy"));
  }
  CopyOptions o;
  o.source = parsed->positional[0];
  o.destination = parsed->positional[1];
  o.timeout = g.timeout;
  o.debug = g.debug;
  o.flush = parsed->Has("--flush");
  o.progress = parsed->Has("--progress") || ::isatty(STDERR_FILENO) == 1;
  auto connections = ParseCount(*parsed, "--connections", 4, 64);
  auto requests = ParseCount(*parsed, "--requests", 64, 1024);
  auto request_size =
      ParseCount(*parsed, "--request-size", 256 << 10, kHardMaxPayload);
  for (const auto* r : {&connections, &requests, &request_size}) {
    if (!r->ok()) return UsageError(r->status().message(), UsageFor("copy"));
  }
  o.connections = *connections;
  o.requests = *requests;
  o.request_size = *request_size;
  if (const std::string* a = parsed->Value("--adapter")) {
    std::optional<Adapter> adapter = ParseAdapter(*a);
    if (!adapter) {
      return UsageError(absl::StrCat("unknown adapter '", *a, "'"),
                        UsageFor("copy"));
    }
    o.adapter = *adapter;
  }
  if (o.source == "null:") {
    return UsageError("null: can only be a destination", UsageFor("copy"));
  }
  absl::StatusOr<CopyStats> stats = RunCopy(o);
  if (!stats.ok())
    return Fail(absl::StrCat("copy: ", stats.status().message()));
  return kExitOk;
}

}  // namespace nbd::tool
