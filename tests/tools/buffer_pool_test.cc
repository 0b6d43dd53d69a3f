// BufferPool: distinct, non-overlapping, writable buffers of the asked
// size; released ones come back first.
#include "tools/nbd/buffer_pool.h"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <set>
#include <vector>

#include "gtest/gtest.h"

namespace nbd::tool {
namespace {

TEST(BufferPoolTest, BuffersAreDistinctAndDoNotOverlap) {
  // An odd size, and more buffers than one slab holds.
  constexpr size_t kSize = 300001;
  BufferPool pool(kSize);
  std::vector<uint8_t*> got;
  for (int i = 0; i < 100; ++i) {
    uint8_t* b = pool.Get();
    std::memset(b, i, kSize);  // all of it is writable
    got.push_back(b);
  }
  for (size_t i = 0; i < got.size(); ++i) {
    // Each still holds its own fill: no other buffer overlapped it.
    EXPECT_EQ(got[i][0], static_cast<uint8_t>(i));
    EXPECT_EQ(got[i][kSize - 1], static_cast<uint8_t>(i));
  }
  std::vector<uint8_t*> sorted = got;
  std::sort(sorted.begin(), sorted.end());
  for (size_t i = 1; i < sorted.size(); ++i) {
    EXPECT_GE(sorted[i] - sorted[i - 1], static_cast<ptrdiff_t>(kSize));
  }
}

TEST(BufferPoolTest, ReleasedBufferIsReusedFirst) {
  BufferPool pool(4096);
  uint8_t* a = pool.Get();
  uint8_t* b = pool.Get();
  pool.Release(a);
  EXPECT_EQ(pool.Get(), a);  // most recently used: still in cache
  pool.Release(b);
  pool.Release(a);
  EXPECT_EQ(pool.Get(), a);
  EXPECT_EQ(pool.Get(), b);
}

TEST(BufferPoolTest, BufferLargerThanAHugePage) {
  constexpr size_t kSize = (size_t{2} << 20) + 1;
  BufferPool pool(kSize);
  uint8_t* a = pool.Get();
  uint8_t* b = pool.Get();
  std::memset(a, 1, kSize);
  std::memset(b, 2, kSize);
  EXPECT_EQ(a[kSize - 1], 1);
  EXPECT_EQ(b[0], 2);
}

}  // namespace
}  // namespace nbd::tool
