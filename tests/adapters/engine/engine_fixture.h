// The parameterised fixture of the engine tests: each TEST_P runs once per
// adapter, against the embedded epoll server serving a 1 MiB memory export
// (a FaultyBackend, so a test can make reads fail).
#ifndef NBD_TESTS_ADAPTERS_ENGINE_ENGINE_FIXTURE_H_
#define NBD_TESTS_ADAPTERS_ENGINE_ENGINE_FIXTURE_H_

#include <stdlib.h>
#include <unistd.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "adapters/engine/engine.h"
#include "adapters/server/epoll_server.h"
#include "gtest/gtest.h"
#include "tests/adapters/server/test_backends.h"

namespace nbd::test {

inline constexpr uint64_t kExportSize = 1 << 20;
// Generous: it only matters when something is broken.
inline constexpr absl::Duration kTimeout = absl::Seconds(10);

inline std::vector<uint8_t> Pattern(size_t size, uint8_t seed) {
  std::vector<uint8_t> v(size);
  for (size_t i = 0; i < size; ++i) {
    v[i] = static_cast<uint8_t>((i * 131 + seed * 7 + (i >> 9)) ^ seed);
  }
  return v;
}

// Counts a command's completions and keeps its last status.
struct Outcome {
  int calls = 0;
  absl::Status status;
  engine::Done Callback() {
    return [this](const absl::Status& s) {
      ++calls;
      status = s;
    };
  }
};

class EngineTest : public ::testing::TestWithParam<engine::Adapter> {
 protected:
  void SetUp() override {
    // A fresh directory per test: the sandbox's PID namespace makes getpid()
    // repeat across concurrently running tests, so no PID-based name.
    char dir[] = "/tmp/nbd-engine-test.XXXXXX";
    ASSERT_NE(::mkdtemp(dir), nullptr);
    dir_ = dir;
    backend_ = std::make_shared<FaultyBackend>(kExportSize);
    EpollServerOptions options;
    options.unix_path = dir_ + "/s";
    options.exports.push_back({"", "test export", backend_});
    auto server = EpollServer::Create(std::move(options));
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(*server);
    ASSERT_TRUE(server_->Start().ok());
  }

  void TearDown() override {
    server_.reset();
    if (!dir_.empty()) {
      ::unlink((dir_ + "/s").c_str());
      ::rmdir(dir_.c_str());
    }
  }

  std::unique_ptr<engine::Engine> NewEngine(absl::Duration timeout = kTimeout) {
    auto engine =
        engine::Engine::Create({.adapter = GetParam(), .timeout = timeout});
    EXPECT_TRUE(engine.ok()) << engine.status();
    if (!engine.ok()) return nullptr;
    return std::move(*engine);
  }

  std::string dir_;
  std::shared_ptr<FaultyBackend> backend_;
  std::unique_ptr<EpollServer> server_;
};

inline std::string ParamName(
    const ::testing::TestParamInfo<engine::Adapter>& info) {
  return engine::AdapterName(info.param);
}

#define NBD_ENGINE_FOR_ALL_ADAPTERS(suite)                 \
  INSTANTIATE_TEST_SUITE_P(                                \
      Adapters, suite,                                     \
      ::testing::Values(::nbd::engine::Adapter::kBlocking, \
                        ::nbd::engine::Adapter::kEpoll,    \
                        ::nbd::engine::Adapter::kIoUring), \
      ::nbd::test::ParamName)

}  // namespace nbd::test

#endif  // NBD_TESTS_ADAPTERS_ENGINE_ENGINE_FIXTURE_H_
