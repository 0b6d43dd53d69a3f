// The parameterised fixture shared by the interop tests: each TEST_P runs
// once per adapter (blocking, epoll, io_uring).
#ifndef NBD_TESTS_ADAPTERS_INTEROP_INTEROP_FIXTURE_H_
#define NBD_TESTS_ADAPTERS_INTEROP_INTEROP_FIXTURE_H_

#include <cerrno>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "adapters/connect/connect.h"
#include "adapters/pump/pump.h"
#include "gtest/gtest.h"
#include "protocol/client/client.h"
#include "protocol/status.h"
#include "tests/adapters/interop/harness.h"
#include "tests/testing/servers.h"

namespace nbd::test {

// Generous bounds: they only matter when something is broken.
inline constexpr absl::Duration kTimeout = absl::Seconds(20);

// Deterministic bytes that differ per (seed, index).
inline std::vector<uint8_t> Pattern(size_t size, uint8_t seed) {
  std::vector<uint8_t> v(size);
  for (size_t i = 0; i < size; ++i) {
    v[i] = static_cast<uint8_t>((i * 131 + seed * 7 + (i >> 9)) ^ seed);
  }
  return v;
}

// Sum of extent lengths.
inline uint64_t TotalLength(const std::vector<Extent>& extents) {
  uint64_t total = 0;
  for (const Extent& e : extents) total += e.length;
  return total;
}

// The flags of the extent covering `offset` (extents start at `start`).
inline uint64_t FlagsAt(const std::vector<Extent>& extents, uint64_t start,
                        uint64_t offset) {
  for (const Extent& e : extents) {
    if (offset < start + e.length) return e.flags;
    start += e.length;
  }
  return ~uint64_t{0};
}

class InteropTest : public ::testing::TestWithParam<AdapterKind> {
 protected:
  std::unique_ptr<Harness> NewHarness() {
    return Harness::Create(GetParam(), &counters_);
  }

  // Connects a new harness to a Unix socket.
  std::unique_ptr<Harness> ConnectTo(const std::string& socket,
                                     ClientOptions options = {}) {
    auto fd = adapters::ConnectUnix(socket);
    EXPECT_TRUE(fd.ok()) << fd.status();
    if (!fd.ok()) return nullptr;
    std::unique_ptr<Harness> h = NewHarness();
    absl::Status s = h->Connect(*fd, std::move(options), kTimeout);
    EXPECT_TRUE(s.ok()) << s;
    if (!s.ok()) return nullptr;
    return h;
  }

  static void SkipUnless(const std::string& program) {
    if (!HaveProgram(program)) GTEST_SKIP() << program << " not installed";
  }

  adapters::SyscallCounters counters_;
};

inline std::string ParamName(
    const ::testing::TestParamInfo<AdapterKind>& info) {
  return engine::AdapterName(info.param);
}

#define NBD_INSTANTIATE_FOR_ALL_ADAPTERS(suite)              \
  INSTANTIATE_TEST_SUITE_P(                                  \
      Adapters, suite,                                       \
      ::testing::Values(::nbd::test::AdapterKind::kBlocking, \
                        ::nbd::test::AdapterKind::kEpoll,    \
                        ::nbd::test::AdapterKind::kIoUring), \
      ::nbd::test::ParamName)

// Every op completed exactly once, with OK.
#define EXPECT_ALL_OK(ops)                                      \
  for (const ::nbd::test::Op& op_ : (ops)) {                    \
    EXPECT_TRUE(op_.issued) << "op " << &op_ - &(ops)[0];       \
    EXPECT_EQ(op_.completions, 1) << "op " << &op_ - &(ops)[0]; \
    EXPECT_TRUE(op_.status.ok())                                \
        << "op " << &op_ - &(ops)[0] << ": " << op_.status;     \
  }

}  // namespace nbd::test

#endif  // NBD_TESTS_ADAPTERS_INTEROP_INTEROP_FIXTURE_H_
