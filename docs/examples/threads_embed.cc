// Commands from several threads through one nbd::engine::Engine: each
// worker thread writes its own block through a ThreadSafeExport; the main
// thread is the loop thread, where every completion runs. It then reads
// the blocks back and checks them. Usage: threads_embed NBD-URI
#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdio>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "adapters/engine/engine.h"

namespace {

constexpr int kWorkers = 4;
constexpr size_t kBlock = 4096;

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s NBD-URI\n", argv[0]);
    return 2;
  }
  // [START threads]
  // Completions of tagged commands arrive here, on the loop thread (this
  // one), inside RunUntil(): no lock is needed for `completed`.
  int completed = 0;
  int failed = 0;
  nbd::engine::EngineOptions options;
  options.timeout = absl::Seconds(10);
  options.on_complete = [&](const nbd::engine::Export&, size_t conn,
                            uint64_t tag, const absl::Status& status) {
    ++completed;
    if (!status.ok()) {
      ++failed;
      std::fprintf(stderr, "block %d on connection %zu: %s\n",
                   static_cast<int>(tag), conn, status.ToString().c_str());
    }
  };
  auto engine = nbd::engine::Engine::Create(std::move(options));
  if (!engine.ok()) return 1;
  auto exp = (*engine)->Open(argv[1], 1);
  if (!exp.ok()) return 1;

  // A copyable handle any thread may use. Each buffer belongs to the
  // engine from the submit call until its completion ran.
  const nbd::engine::ThreadSafeExport handle = (*exp)->thread_safe();
  std::vector<std::vector<uint8_t>> blocks(kWorkers);
  std::atomic<int> refused{0};
  std::vector<std::thread> workers;
  for (int w = 0; w < kWorkers; ++w) {
    workers.emplace_back([&blocks, &refused, handle, w] {
      blocks[w].assign(kBlock, static_cast<uint8_t>('a' + w));
      absl::Status s = handle.Write(/*conn=*/0, w * kBlock, blocks[w],
                                    /*flags=*/0, nbd::engine::Tag{uint64_t(w)});
      if (!s.ok()) ++refused;  // queued nothing; no completion will come
    });
  }
  // Meanwhile the loop thread runs the engine, woken by each submission,
  // until every write completed or was refused.
  absl::Status run = (*engine)->RunUntil(
      [&] { return completed == kWorkers - refused; }, absl::Seconds(10));
  for (std::thread& t : workers) t.join();
  // [END threads]
  if (!run.ok() || failed > 0 || refused > 0) {
    std::fprintf(stderr, "writes: %s, %d failed, %d refused\n",
                 run.ToString().c_str(), failed, refused.load());
    return 1;
  }

  // Read back on the loop thread itself (the Export's own calls).
  std::vector<uint8_t> back(kWorkers * kBlock);
  absl::Status read_status;
  if (!(*exp)
           ->Read(0, 0, absl::MakeSpan(back),
                  [&](const absl::Status& s) { read_status = s; })
           .ok() ||
      !(*engine)->Drain().ok() || !read_status.ok()) {
    std::fprintf(stderr, "read back: %s\n", read_status.ToString().c_str());
    return 1;
  }
  for (int w = 0; w < kWorkers; ++w) {
    if (!std::equal(blocks[w].begin(), blocks[w].end(),
                    back.begin() + w * kBlock)) {
      std::fprintf(stderr, "block %d read back wrong\n", w);
      return 1;
    }
  }
  absl::Status shutdown = (*engine)->Shutdown();
  std::printf("%d blocks written from %d threads, read back intact; %s\n",
              kWorkers, kWorkers, shutdown.ok() ? "closed" : "shutdown failed");
  return shutdown.ok() ? 0 : 1;
}
