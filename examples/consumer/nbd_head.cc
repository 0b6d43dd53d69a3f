// nbd_head: connects to an NBD URI with the engine, prints the export's size
// and the first bytes of its first block. A program of another workspace,
// built against @nbd_engine//adapters/engine (see README.md, "Using
// nbd-engine from another Bazel workspace").
//
//   nbd_head URI [blocking|epoll|io_uring]
//
// Exit status: 0 success, 1 error (one line on stderr), 2 usage error.
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "adapters/engine/engine.h"

namespace {

constexpr size_t kBlock = 4096;
constexpr size_t kShown = 16;  // bytes printed in hex

int Fail(const std::string& what, const absl::Status& status) {
  std::fprintf(stderr, "nbd_head: %s: %s\n", what.c_str(),
               status.ToString().c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || argc > 3) {
    std::fprintf(stderr, "usage: %s URI [blocking|epoll|io_uring]\n", argv[0]);
    return 2;
  }
  nbd::engine::EngineOptions options;
  options.timeout = absl::Seconds(10);  // bounds every wait
  if (argc == 3) {
    auto adapter = nbd::engine::ParseAdapter(argv[2]);
    if (!adapter) {
      std::fprintf(stderr, "nbd_head: unknown adapter '%s'\n", argv[2]);
      return 2;
    }
    options.adapter = *adapter;
  }
  // Declared before the Engine so that it is freed after it: the engine
  // owns a buffer given to Read() until the callback ran or the Engine is
  // gone (io_uring may still hold a receive into it after an error).
  std::vector<uint8_t> block;
  auto engine = nbd::engine::Engine::Create(std::move(options));
  if (!engine.ok()) return Fail("engine", engine.status());
  auto exp = (*engine)->Open(argv[1], 1);
  if (!exp.ok()) return Fail("open", exp.status());
  std::printf("size: %llu\n", static_cast<unsigned long long>((*exp)->size()));

  block.resize(std::min<uint64_t>(kBlock, (*exp)->size()));
  absl::Status read_status;
  if (!block.empty()) {
    absl::Status issued = (*exp)->Read(
        0, 0, absl::MakeSpan(block),
        [&read_status](const absl::Status& s) { read_status = s; });
    if (!issued.ok()) return Fail("read", issued);
    absl::Status drained = (*engine)->Drain();
    if (!drained.ok()) return Fail("read", drained);
    if (!read_status.ok()) return Fail("read at offset 0", read_status);
    std::printf("block 0 (%zu bytes):", block.size());
    for (size_t i = 0; i < std::min(kShown, block.size()); ++i) {
      std::printf(" %02x", block[i]);
    }
    std::printf("\n");
  }
  absl::Status closed = (*engine)->Shutdown();
  if (!closed.ok()) return Fail("shutdown", closed);
  return 0;
}
