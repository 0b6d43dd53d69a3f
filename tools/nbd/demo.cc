// `nbd demo`: the embedded server plus every adapter, with nothing else
// installed or running. For each adapter (blocking, epoll, io_uring) it
// starts two in-process EpollServers with memory exports on Unix sockets
// in a fresh /tmp directory, then through that adapter writes a pattern to
// the first, copies it to the second (RunCopy, i.e. `nbd copy --adapter
// X`), maps the
// copy (block status), reads it back and compares, and disconnects; and
// prints a compact report.
#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "adapters/server/epoll_server.h"
#include "adapters/server/memory_backend.h"
#include "protocol/constants.h"
#include "tools/nbd/args.h"
#include "tools/nbd/command.h"
#include "tools/nbd/copy.h"
#include "tools/nbd/demo_layout.h"
#include "tools/nbd/diag.h"
#include "tools/nbd/extents.h"
#include "tools/nbd/open.h"
#include "tools/nbd/usage.h"

namespace nbd::tool {
namespace {

constexpr uint64_t kDefaultDemoSize = uint64_t{8} << 20;
constexpr uint64_t kMaxDemoSize = uint64_t{256} << 20;
constexpr size_t kChunk = 256 * 1024;

// "8.00 MiB", "1.5 KiB", "12 B": a byte count for the demo's report lines.
std::string SizeText(uint64_t n) {
  if (n >= (uint64_t{1} << 20)) {
    return absl::StrFormat("%.2f MiB", static_cast<double>(n) / (1 << 20));
  }
  if (n >= 1024) return absl::StrFormat("%.1f KiB", n / 1024.0);
  return absl::StrCat(n, " B");
}

std::string Millis(absl::Duration d) {
  return absl::StrFormat("%8.2f ms", absl::ToDoubleMilliseconds(d));
}

std::string Rate(uint64_t bytes, absl::Duration d) {
  const double s = absl::ToDoubleSeconds(d);
  if (s <= 0) return "";
  return absl::StrFormat("%8.1f MiB/s", bytes / s / (1 << 20));
}

struct Step {
  std::string name;
  std::string detail;
  absl::Duration took;
  std::string rate;
};

// One adapter's run: the steps done so far, and how it ended.
struct Run {
  Adapter adapter;
  std::string used;  // the adapter the engine really used
  std::vector<Step> steps;
  uint64_t syscalls = 0;
  absl::Status status;
};

void AddStep(Run* run, Step step) { run->steps.push_back(std::move(step)); }
void AddStep(Run* run, std::string name, std::string detail,
             absl::Duration took, std::string rate = "") {
  AddStep(run, Step{std::move(name), std::move(detail), took, std::move(rate)});
}

// A temporary directory under /tmp, removed (with its files) at the end.
class TempDir {
 public:
  static absl::StatusOr<TempDir> Create() {
    char tmpl[] = "/tmp/nbd-demo.XXXXXX";
    if (mkdtemp(tmpl) == nullptr) {
      return absl::InternalError(
          absl::StrCat("mkdtemp /tmp/nbd-demo.XXXXXX: ", strerror(errno)));
    }
    return TempDir(tmpl);
  }
  TempDir(TempDir&& o) noexcept : path_(std::move(o.path_)) { o.path_.clear(); }
  ~TempDir() {
    if (path_.empty()) return;
    for (const std::string& f : files_) unlink(f.c_str());
    rmdir(path_.c_str());
  }
  const std::string& path() const { return path_; }
  std::string File(const std::string& name) {
    files_.push_back(absl::StrCat(path_, "/", name));
    return files_.back();
  }

 private:
  explicit TempDir(std::string path) : path_(std::move(path)) {}
  std::string path_;
  std::vector<std::string> files_;
};

absl::StatusOr<std::unique_ptr<EpollServer>> StartServer(
    const std::string& socket, uint64_t size) {
  EpollServerOptions options;
  options.unix_path = socket;
  options.exports.push_back(
      {"", "nbd demo memory export", std::make_shared<MemoryBackend>(size)});
  absl::StatusOr<std::unique_ptr<EpollServer>> server =
      EpollServer::Create(std::move(options));
  if (!server.ok()) return server.status();
  if (absl::Status s = (*server)->Start(); !s.ok()) return s;
  return server;
}

// Writes the layout's regions in kChunk requests, all in flight at once.
absl::Status WriteLayout(Engine& engine, Export& exp, const DemoLayout& layout,
                         std::deque<std::vector<uint8_t>>& buffers,
                         size_t* requests) {
  absl::Status first;
  for (const DemoRegion& r : layout.regions()) {
    for (uint64_t off = r.offset; off < r.offset + r.length; off += kChunk) {
      std::vector<uint8_t>& buf = buffers.emplace_back(
          std::min<uint64_t>(kChunk, r.offset + r.length - off));
      layout.Fill(off, absl::MakeSpan(buf));
      auto done = [&first, off](const absl::Status& s) {
        if (!s.ok() && first.ok()) {
          first =
              absl::Status(s.code(), absl::StrCat("NBD_CMD_WRITE at offset ",
                                                  off, ": ", StatusText(s)));
        }
      };
      if (absl::Status s = exp.Write(0, off, buf, 0, done); !s.ok()) {
        return absl::Status(s.code(), absl::StrCat("NBD_CMD_WRITE at offset ",
                                                   off, ": ", StatusText(s)));
      }
      ++*requests;
    }
  }
  if (absl::Status s = engine.Drain(); !s.ok()) return s;
  if (!first.ok()) return first;
  if (!exp.info().can_flush()) return absl::OkStatus();
  exp.Flush(0,
            [&first](const absl::Status& s) {
              if (!s.ok())
                first = absl::Status(
                    s.code(), absl::StrCat("NBD_CMD_FLUSH: ", StatusText(s)));
            })
      .IgnoreError();
  if (absl::Status s = engine.Drain(); !s.ok()) return s;
  return first;
}

// The merged base:allocation map of the whole export.
absl::StatusOr<std::vector<MappedExtent>> MapExport(Engine& engine,
                                                    Export& exp) {
  std::vector<MappedExtent> map;
  const uint64_t size = exp.size();
  for (uint64_t off = 0; off < size;) {
    absl::Status result;
    uint64_t covered = 0;
    absl::Status s = exp.BlockStatus(
        0, off, size - off,
        [&](const absl::Status& st, uint64_t at, const std::vector<Extent>& e) {
          result = st;
          if (!st.ok()) return;
          AppendExtents(at, e, &map);
          for (const Extent& x : e) covered += x.length;
        });
    if (s.ok()) s = engine.Drain();
    if (s.ok()) s = result;
    if (s.ok() && covered == 0) s = absl::DataLossError("no extents returned");
    if (!s.ok()) {
      return absl::Status(
          s.code(), absl::StrCat("NBD_CMD_BLOCK_STATUS at offset ", off, ": ",
                                 StatusText(s)));
    }
    off += covered;
  }
  return map;
}

// Reads the whole export into `buffer` in kChunk requests.
absl::Status ReadAll(Engine& engine, Export& exp, std::vector<uint8_t>& buffer,
                     size_t* requests) {
  absl::Status first;
  buffer.assign(exp.size(), 0xEE);
  for (uint64_t off = 0; off < buffer.size(); off += kChunk) {
    const size_t n = std::min<uint64_t>(kChunk, buffer.size() - off);
    auto done = [&first, off](const absl::Status& s) {
      if (!s.ok() && first.ok()) {
        first = absl::Status(s.code(), absl::StrCat("NBD_CMD_READ at offset ",
                                                    off, ": ", StatusText(s)));
      }
    };
    absl::Status s =
        exp.Read(0, off, absl::MakeSpan(buffer).subspan(off, n), done);
    if (!s.ok()) {
      return absl::Status(s.code(), absl::StrCat("NBD_CMD_READ at offset ", off,
                                                 ": ", StatusText(s)));
    }
    ++*requests;
  }
  if (absl::Status s = engine.Drain(); !s.ok()) return s;
  return first;
}

std::string DescribeMap(const std::vector<MappedExtent>& map) {
  uint64_t data = 0, zero = 0;
  for (const MappedExtent& e : map) {
    ((e.type & kStateZero) != 0 ? zero : data) += e.length;
  }
  return absl::StrCat(map.size(), " extents: ", SizeText(data), " data, ",
                      SizeText(zero), " zero");
}

// The whole sequence for one adapter. Steps are appended as they finish;
// the first failure ends the run.
void RunAdapter(Adapter adapter, uint64_t size, TempDir& dir,
                const GlobalOptions& g, Run* run) {
  const std::string name = AdapterName(adapter);
  const DemoLayout layout(size, static_cast<uint8_t>(adapter) + 1);
  auto fail = [&](const std::string& step, const absl::Status& s) {
    run->status =
        absl::Status(s.code(), absl::StrCat(step, ": ", StatusText(s)));
  };

  absl::StatusOr<std::unique_ptr<EpollServer>> src =
      StartServer(dir.File(name + "-src.sock"), size);
  if (!src.ok()) return fail("start source server", src.status());
  absl::StatusOr<std::unique_ptr<EpollServer>> dst =
      StartServer(dir.File(name + "-dst.sock"), size);
  if (!dst.ok()) return fail("start destination server", dst.status());
  const std::string src_uri = (*src)->uri(), dst_uri = (*dst)->uri();
  Debug(g, absl::StrCat("demo ", name, ": source ", src_uri, ", destination ",
                        dst_uri));

  // 1. Write the pattern to the source, and check its map.
  {
    std::deque<std::vector<uint8_t>> buffers;  // outlives the engine
    absl::StatusOr<std::unique_ptr<Engine>> engine = Engine::Create(
        {.adapter = adapter, .timeout = g.timeout, .debug = DebugLog(g.debug)});
    if (!engine.ok()) return fail("create engine", engine.status());
    run->used = AdapterName((*engine)->adapter());
    absl::Time t0 = absl::Now();
    absl::StatusOr<Export*> exp = (*engine)->Open(src_uri, 1);
    if (!exp.ok()) return fail(absl::StrCat("connect ", src_uri), exp.status());
    AddStep(run, "connect", "source, handshake done", absl::Now() - t0);

    t0 = absl::Now();
    size_t requests = 0;
    absl::Status s = WriteLayout(**engine, **exp, layout, buffers, &requests);
    if (!s.ok()) return fail(absl::StrCat("write ", src_uri), s);
    absl::Duration took = absl::Now() - t0;
    AddStep(run, "write",
            absl::StrCat(SizeText(layout.data_bytes()), " in ", requests,
                         " requests + flush"),
            took, Rate(layout.data_bytes(), took));

    t0 = absl::Now();
    absl::StatusOr<std::vector<MappedExtent>> map = MapExport(**engine, **exp);
    if (!map.ok()) return fail(absl::StrCat("map ", src_uri), map.status());
    if (*map != layout.ExpectedMap()) {
      return fail(absl::StrCat("map ", src_uri),
                  absl::DataLossError(
                      absl::StrCat("the source map (", DescribeMap(*map),
                                   ") is not the written layout")));
    }
    AddStep(run, "map",
            absl::StrCat("source: ", DescribeMap(*map), " (as written)"),
            absl::Now() - t0);
    t0 = absl::Now();
    s = (*engine)->Shutdown();
    if (!s.ok()) return fail(absl::StrCat("disconnect ", src_uri), s);
    AddStep(run, "disconnect", "source, server closed cleanly",
            absl::Now() - t0);
    run->syscalls += (*engine)->counters().total();
  }

  // 2. Copy it: the library behind `nbd copy --adapter X`.
  {
    CopyOptions copy;
    copy.source = src_uri;
    copy.destination = dst_uri;
    copy.adapter = adapter;
    copy.flush = true;
    copy.timeout = g.timeout;
    copy.debug = g.debug;
    const absl::Time t0 = absl::Now();
    absl::StatusOr<CopyStats> stats = RunCopy(copy);
    if (!stats.ok()) return fail("copy", stats.status());
    const absl::Duration took = absl::Now() - t0;
    AddStep(run, "copy",
            absl::StrCat("source -> destination (nbd copy --adapter ",
                         AdapterName(stats->adapter), "): ", stats->reads,
                         " reads, ", stats->writes, " writes, ",
                         SizeText(stats->bytes_zero), " skipped as zero"),
            took, Rate(stats->size, took));
    if (stats->adapter != adapter) run->used = AdapterName(stats->adapter);
  }

  // 3. Map and verify the copy.
  {
    std::vector<uint8_t> data;  // outlives the engine
    absl::StatusOr<std::unique_ptr<Engine>> engine = Engine::Create(
        {.adapter = adapter, .timeout = g.timeout, .debug = DebugLog(g.debug)});
    if (!engine.ok()) return fail("create engine", engine.status());
    absl::Time t0 = absl::Now();
    absl::StatusOr<Export*> exp = (*engine)->Open(dst_uri, 1);
    if (!exp.ok()) return fail(absl::StrCat("connect ", dst_uri), exp.status());
    AddStep(run, "connect", "destination, handshake done", absl::Now() - t0);

    t0 = absl::Now();
    absl::StatusOr<std::vector<MappedExtent>> map = MapExport(**engine, **exp);
    if (!map.ok()) return fail(absl::StrCat("map ", dst_uri), map.status());
    if (!layout.Consistent(*map)) {
      return fail(absl::StrCat("map ", dst_uri),
                  absl::DataLossError(
                      absl::StrCat("the copy's map (", DescribeMap(*map),
                                   ") marks written data as zero")));
    }
    AddStep(run, "map",
            absl::StrCat("destination: ", DescribeMap(*map),
                         *map == layout.ExpectedMap() ? " (sparse copy)" : ""),
            absl::Now() - t0);

    t0 = absl::Now();
    size_t requests = 0;
    absl::Status s = ReadAll(**engine, **exp, data, &requests);
    if (!s.ok()) return fail(absl::StrCat("verify ", dst_uri), s);
    if (std::optional<uint64_t> bad = layout.FirstMismatch(0, data)) {
      return fail(absl::StrCat("verify ", dst_uri),
                  absl::DataLossError(absl::StrFormat(
                      "byte at offset %d is 0x%02x, expected 0x%02x", *bad,
                      data[*bad], layout.ByteAt(*bad))));
    }
    const absl::Duration took = absl::Now() - t0;
    AddStep(run, "verify",
            absl::StrCat(SizeText(size), " read in ", requests,
                         " requests, identical to the source"),
            took, Rate(size, took));
    t0 = absl::Now();
    s = (*engine)->Shutdown();
    if (!s.ok()) return fail(absl::StrCat("disconnect ", dst_uri), s);
    AddStep(run, "disconnect", "destination, server closed cleanly",
            absl::Now() - t0);
    run->syscalls += (*engine)->counters().total();
  }
}

void PrintRun(const Run& run) {
  std::printf(
      "\n== %s ==%s\n", AdapterName(run.adapter),
      !run.used.empty() && run.used != AdapterName(run.adapter)
          ? absl::StrCat("  (engine fell back to ", run.used, ")").c_str()
          : "");
  for (const Step& s : run.steps) {
    std::printf("  %-10s %s %s  %s\n", s.name.c_str(), Millis(s.took).c_str(),
                s.rate.empty() ? "            " : s.rate.c_str(),
                s.detail.c_str());
  }
  if (run.status.ok()) {
    std::printf("  %-10s %llu system calls by the adapter (copy excluded)\n",
                "syscalls",
                static_cast<unsigned long long>(run.syscalls));  // NOLINT
    std::printf("  result     OK\n");
  } else {
    std::printf("  result     FAILED: %s\n", StatusText(run.status).c_str());
  }
  std::fflush(stdout);
}

}  // namespace

int DemoCommand(const std::vector<std::string>& args, const GlobalOptions& g) {
  absl::StatusOr<ParsedArgs> parsed = ParseArgs(args, "demo");
  if (!parsed.ok()) {
    return UsageError(parsed.status().message(), UsageFor("demo"));
  }
  if (!parsed->positional.empty()) {
    return UsageError(
        absl::StrCat("demo: unexpected argument '", parsed->positional[0], "'"),
        UsageFor("demo"));
  }
  uint64_t size = kDefaultDemoSize;
  if (const std::string* text = parsed->Value("--size")) {
    absl::StatusOr<uint64_t> s = ParseSize(*text);
    if (!s.ok() || *s == 0 || *s % kDemoSizeUnit != 0 || *s > kMaxDemoSize) {
      return UsageError("demo: --size must be a multiple of 2M, at most 256M",
                        UsageFor("demo"));
    }
    size = *s;
  }
  absl::StatusOr<TempDir> dir = TempDir::Create();
  if (!dir.ok()) return Fail(absl::StrCat("demo: ", StatusText(dir.status())));

  const DemoLayout layout(size, 0);
  std::printf(
      "nbd demo: embedded NBD server (EpollServer, memory backend) on Unix "
      "sockets in %s\n"
      "  per adapter: write %s in %zu regions of a %s export, copy it to a "
      "second server,\n"
      "  map the copy (block status), read it back and compare, "
      "disconnect\n",
      dir->path().c_str(), SizeText(layout.data_bytes()).c_str(),
      layout.regions().size(), SizeText(size).c_str());
  std::fflush(stdout);

  std::vector<std::string> failed;
  absl::Status first_error;
  std::string first_adapter;
  const absl::Time start = absl::Now();
  for (Adapter adapter :
       {Adapter::kBlocking, Adapter::kEpoll, Adapter::kIoUring}) {
    Run run;
    run.adapter = adapter;
    RunAdapter(adapter, size, *dir, g, &run);
    PrintRun(run);
    if (!run.status.ok()) {
      failed.push_back(AdapterName(adapter));
      if (first_error.ok()) {
        first_error = run.status;
        first_adapter = AdapterName(adapter);
      }
    }
  }
  if (!failed.empty()) {
    std::printf("\ndemo: FAILED (%s)\n", absl::StrJoin(failed, ", ").c_str());
    std::fflush(stdout);
    return Fail(
        absl::StrCat("demo: ", first_adapter, ": ", StatusText(first_error)));
  }
  std::printf(
      "\ndemo: OK: blocking, epoll and io_uring each wrote, copied, mapped, "
      "verified and disconnected cleanly (%.0f ms in all)\n",
      absl::ToDoubleMilliseconds(absl::Now() - start));
  std::fflush(stdout);
  return kExitOk;
}

}  // namespace nbd::tool
