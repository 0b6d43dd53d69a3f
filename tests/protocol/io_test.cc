// IoSlice's promise (protocol/io.h): an IoSlice array is an iovec array, so
// a gather list from PeekOutput() can go to writev() as it is. The layout
// itself is asserted at compile time by the header; this shows the kernel
// reads it that way.
#include "protocol/io.h"

#include <sys/uio.h>
#include <unistd.h>

#include <array>
#include <string>

#include "gtest/gtest.h"

namespace nbd {
namespace {

TEST(IoSliceTest, WritevReadsAnIoSliceArrayAsIovecs) {
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  const std::string first = "hello, ";
  const std::string second = "world";
  std::array<IoSlice, 2> slices = {
      IoSlice{reinterpret_cast<const uint8_t*>(first.data()), first.size()},
      IoSlice{reinterpret_cast<const uint8_t*>(second.data()), second.size()},
  };
  ASSERT_EQ(writev(fds[1], reinterpret_cast<const iovec*>(slices.data()),
                   static_cast<int>(slices.size())),
            12);
  char got[16] = {};
  ASSERT_EQ(read(fds[0], got, sizeof(got)), 12);
  EXPECT_EQ(std::string(got, 12), "hello, world");
  close(fds[0]);
  close(fds[1]);
}

}  // namespace
}  // namespace nbd
