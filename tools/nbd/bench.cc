#include "tools/nbd/bench.h"

#include <sys/resource.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <memory>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "protocol/status.h"
#include "tools/nbd/args.h"
#include "tools/nbd/command.h"
#include "tools/nbd/diag.h"
#include "tools/nbd/json.h"
#include "tools/nbd/usage.h"

namespace nbd::tool {
namespace {

double CpuSeconds() {
  rusage ru = {};
  ::getrusage(RUSAGE_SELF, &ru);
  return absl::ToDoubleSeconds(absl::DurationFromTimeval(ru.ru_utime) +
                               absl::DurationFromTimeval(ru.ru_stime));
}

class Bench {
 public:
  explicit Bench(const BenchOptions& o) : o_(o) {}
  absl::StatusOr<BenchResult> Run();

 private:
  void Issue(size_t conn, uint8_t* buffer);
  uint64_t NextOffset();

  const BenchOptions& o_;
  // Before the engine, so they outlive it (see open.h).
  std::vector<std::unique_ptr<uint8_t[]>> buffers_;
  std::unique_ptr<Engine> engine_;
  Export* exp_ = nullptr;
  uint64_t blocks_ = 0;
  uint64_t next_block_ = 0;
  uint64_t rng_ = 0x9e3779b97f4a7c15u;
  bool stopping_ = false;
  uint64_t ops_ = 0;
  absl::Status error_;
};

uint64_t Bench::NextOffset() {
  uint64_t block;
  if (o_.random) {
    // xorshift64*: cheap, and the same sequence every run.
    rng_ ^= rng_ >> 12;
    rng_ ^= rng_ << 25;
    rng_ ^= rng_ >> 27;
    block = (rng_ * 0x2545f4914f6cdd1du) % blocks_;
  } else {
    block = next_block_;
    next_block_ = (next_block_ + 1) % blocks_;
  }
  return block * o_.block_size;
}

void Bench::Issue(size_t conn, uint8_t* buffer) {
  uint64_t offset = NextOffset();
  auto done = [this, conn, buffer, offset](const absl::Status& s) {
    if (!s.ok()) {
      if (error_.ok()) {
        error_ = absl::Status(
            s.code(), absl::StrCat(o_.uri, ": ", o_.write ? "write" : "read",
                                   " at offset ", offset, ": ", StatusText(s)));
      }
      return;
    }
    ++ops_;
    if (!stopping_ && error_.ok()) Issue(conn, buffer);
  };
  absl::Status s =
      o_.write
          ? exp_->Write(conn, offset,
                        absl::MakeConstSpan(buffer, o_.block_size), 0, done)
          : exp_->Read(conn, offset, absl::MakeSpan(buffer, o_.block_size),
                       done);
  if (!s.ok() && error_.ok()) {
    error_ = absl::Status(s.code(), absl::StrCat(o_.uri, ": issue at offset ",
                                                 offset, ": ", StatusText(s)));
  }
}

absl::StatusOr<BenchResult> Bench::Run() {
  absl::StatusOr<std::unique_ptr<Engine>> engine =
      Engine::Create({.adapter = o_.adapter,
                      .timeout = o_.timeout,
                      .debug = DebugLog(o_.debug),
                      .recv_readahead = ReadaheadFor(o_.block_size),
                      // The user's own command line, as with nbdinfo.
                      .uri_policy = adapters::UriPolicy::Trusted()});
  if (!engine.ok()) return engine.status();
  engine_ = std::move(*engine);
  absl::StatusOr<Export*> exp = engine_->Open(o_.uri, o_.connections);
  if (!exp.ok()) {
    return Named(o_.uri, "open", exp.status());
  }
  exp_ = *exp;
  blocks_ = exp_->size() / o_.block_size;
  if (blocks_ == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(o_.uri, ": the export (", exp_->size(),
                     " bytes) is smaller than one block"));
  }
  if (o_.block_size > exp_->info().max_payload()) {
    return absl::InvalidArgumentError(absl::StrCat(
        o_.uri, ": --bs ", o_.block_size, " exceeds the payload limit ",
        exp_->info().max_payload()));
  }

  adapters::SyscallCounters before = engine_->counters();
  double cpu_before = CpuSeconds();
  absl::Time start = absl::Now();
  absl::Time end = start + o_.duration;
  for (size_t c = 0; c < exp_->connections(); ++c) {
    for (size_t i = 0; i < o_.queue_depth; ++i) {
      buffers_.push_back(std::make_unique<uint8_t[]>(o_.block_size));
      uint8_t* b = buffers_.back().get();
      if (o_.write) std::fill_n(b, o_.block_size, uint8_t{0xa5});
      Issue(c, b);
    }
  }
  // Completions reissue from their callbacks; the clock is only read once
  // per Poll, not once per operation.
  // After an error nothing is reissued; the rest in flight is not waited
  // for.
  while (engine_->in_flight() > 0 && error_.ok()) {
    if (absl::Status s = engine_->Poll(); !s.ok()) {
      // A timeout already names the server, the oldest command and its
      // offset.
      if (StatusErrno(s) == ETIMEDOUT) return s;
      return absl::Status(s.code(), absl::StrCat(o_.uri, ": ", StatusText(s)));
    }
    if (!stopping_ && absl::Now() >= end) stopping_ = true;
  }
  absl::Duration elapsed = absl::Now() - start;
  double cpu = CpuSeconds() - cpu_before;
  uint64_t syscalls = engine_->counters().total() - before.total();
  if (!error_.ok()) return error_;
  engine_->Shutdown().IgnoreError();

  BenchResult r;
  r.adapter = engine_->adapter();
  r.connections = exp_->connections();
  r.ops = ops_;
  r.bytes = ops_ * o_.block_size;
  r.seconds = absl::ToDoubleSeconds(elapsed);
  double ops = std::max<double>(ops_, 1);
  r.ops_per_sec = ops_ / std::max(r.seconds, 1e-9);
  r.mib_per_sec = r.bytes / std::max(r.seconds, 1e-9) / (1 << 20);
  r.cpu_us_per_op = cpu * 1e6 / ops;
  r.syscalls_per_op = syscalls / ops;
  return r;
}

}  // namespace

absl::StatusOr<BenchResult> RunBench(const BenchOptions& options) {
  Bench bench(options);
  return bench.Run();
}

std::string BenchJson(const BenchOptions& o, const BenchResult& r) {
  return absl::StrFormat(
      "{\"uri\": %s, \"op\": \"%s\", \"pattern\": \"%s\", \"adapter\": "
      "\"%s\", \"bs\": %d, \"qd\": %d, \"connections\": %d, \"seconds\": "
      "%.3f, \"ops\": %d, \"bytes\": %d, \"ops_per_sec\": %.1f, "
      "\"mib_per_sec\": %.2f, \"cpu_us_per_op\": %.3f, \"syscalls_per_op\": "
      "%.3f}",
      JsonString(o.uri), o.write ? "write" : "read",
      o.random ? "random" : "sequential", AdapterName(r.adapter), o.block_size,
      o.queue_depth, r.connections, r.seconds, r.ops, r.bytes, r.ops_per_sec,
      r.mib_per_sec, r.cpu_us_per_op, r.syscalls_per_op);
}

int BenchCommand(const std::vector<std::string>& args, const GlobalOptions& g) {
  absl::StatusOr<ParsedArgs> parsed = ParseArgs(args, "bench");
  if (!parsed.ok())
    return UsageError(parsed.status().message(), UsageFor("bench"));
  if (parsed->positional.size() != 1) {
    return UsageError("bench needs one URI", UsageFor("bench"));
  }
  BenchOptions o;
  o.uri = parsed->positional[0];
  o.timeout = g.timeout;
  o.debug = g.debug;
  o.random = parsed->Has("--random");
  if (const std::string* op = parsed->Value("--op")) {
    if (*op != "read" && *op != "write") {
      return UsageError(absl::StrCat("unknown --op '", *op, "'"),
                        UsageFor("bench"));
    }
    o.write = *op == "write";
  }
  struct Count {
    const char* name;
    uint64_t max;
    uint64_t* out;
  };
  uint64_t bs = o.block_size, qd = o.queue_depth, conns = o.connections;
  for (const Count& c :
       {Count{"--bs", kHardMaxPayload, &bs}, Count{"--qd", 1024, &qd},
        Count{"--connections", 64, &conns}}) {
    const std::string* v = parsed->Value(c.name);
    if (v == nullptr) continue;
    absl::StatusOr<uint64_t> n = ParseSize(*v);
    if (!n.ok() || *n == 0 || *n > c.max) {
      return UsageError(absl::StrCat("bad ", c.name, " '", *v, "'"),
                        UsageFor("bench"));
    }
    *c.out = *n;
  }
  o.block_size = bs;
  o.queue_depth = qd;
  o.connections = conns;
  if (const std::string* v = parsed->Value("--seconds")) {
    absl::StatusOr<absl::Duration> d = ParseSeconds(*v);
    if (!d.ok() || *d <= absl::ZeroDuration()) {
      return UsageError(absl::StrCat("bad --seconds '", *v, "'"),
                        UsageFor("bench"));
    }
    o.duration = *d;
  }
  if (const std::string* a = parsed->Value("--adapter")) {
    std::optional<Adapter> adapter = ParseAdapter(*a);
    if (!adapter) {
      return UsageError(absl::StrCat("unknown adapter '", *a, "'"),
                        UsageFor("bench"));
    }
    o.adapter = *adapter;
  }
  absl::StatusOr<BenchResult> r = RunBench(o);
  if (!r.ok()) return Fail(absl::StrCat("bench: ", r.status().message()));
  if (parsed->Has("--json")) {
    std::printf("%s\n", BenchJson(o, *r).c_str());
  } else {
    std::printf(
        "%s %s, %llu B x qd %zu x %zu connection(s) via %s, %.2f s\n"
        "  %llu ops, %.0f ops/s, %.1f MiB/s\n"
        "  %.2f us CPU/op (user+sys), %.2f syscalls/op\n",
        o.write ? "write" : "read", o.random ? "random" : "sequential",
        static_cast<unsigned long long>(o.block_size), o.queue_depth,
        r->connections, AdapterName(r->adapter), r->seconds,
        static_cast<unsigned long long>(r->ops), r->ops_per_sec, r->mib_per_sec,
        r->cpu_us_per_op, r->syscalls_per_op);
  }
  std::fflush(stdout);
  return kExitOk;
}

}  // namespace nbd::tool
