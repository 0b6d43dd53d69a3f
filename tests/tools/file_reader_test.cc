// FileReader: reads land in the caller's buffers, callbacks run only from
// Reap()/Wait() on the calling thread, errors name their cause.
#include "tools/nbd/file_reader.h"

#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "gtest/gtest.h"
#include "protocol/status.h"

namespace nbd::tool {
namespace {

class FileReaderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl =
        std::string(::getenv("TEST_TMPDIR") != nullptr ? ::getenv("TEST_TMPDIR")
                                                       : "/tmp") +
        "/reader.XXXXXX";
    path_ = tmpl;
    fd_ = ::mkstemp(path_.data());
    ASSERT_GE(fd_, 0);
    data_.resize(1000003);  // not a multiple of any read size below
    for (size_t i = 0; i < data_.size(); ++i) {
      data_[i] = static_cast<uint8_t>(i * 131 + (i >> 9));
    }
    ASSERT_EQ(::pwrite(fd_, data_.data(), data_.size(), 0),
              static_cast<ssize_t>(data_.size()));
  }
  void TearDown() override {
    if (fd_ >= 0) ::close(fd_);
    ::unlink(path_.c_str());
  }

  std::string path_;
  int fd_ = -1;
  std::vector<uint8_t> data_;
};

TEST_F(FileReaderTest, ReadsIntoTheCallersBuffersOnTheCallingThread) {
  FileReader reader(fd_);
  constexpr size_t kChunk = 65536;
  std::vector<std::vector<uint8_t>> buffers;
  size_t chunks = (data_.size() + kChunk - 1) / kChunk;
  buffers.reserve(chunks);
  std::vector<uint8_t> out(data_.size());
  size_t callbacks = 0;
  const std::thread::id me = std::this_thread::get_id();
  for (size_t i = 0; i < chunks; ++i) {
    uint64_t at = i * kChunk;
    size_t n = std::min(kChunk, data_.size() - at);
    buffers.emplace_back(n);
    uint8_t* buf = buffers.back().data();
    reader.Read(at, absl::MakeSpan(buf, n),
                [&, at, buf, n](const absl::Status& s, size_t got) {
                  EXPECT_EQ(std::this_thread::get_id(), me);
                  ASSERT_TRUE(s.ok()) << s;
                  ASSERT_EQ(got, n);
                  std::copy(buf, buf + got, out.begin() + at);
                  ++callbacks;
                });
  }
  EXPECT_EQ(reader.pending(), chunks);
  while (reader.pending() > 0) EXPECT_GT(reader.Wait(), 0u);
  EXPECT_EQ(callbacks, chunks);
  EXPECT_EQ(out, data_);
  EXPECT_EQ(reader.Wait(), 0u);  // nothing pending: returns at once
}

TEST_F(FileReaderTest, ReadPastTheEndOfATruncatedFileIsAnError) {
  FileReader reader(fd_);
  std::vector<uint8_t> buf(4096);
  ASSERT_EQ(::ftruncate(fd_, 1000), 0);  // shrank after its size was taken
  absl::Status status;
  size_t got = 99;
  reader.Read(0, absl::MakeSpan(buf), [&](const absl::Status& s, size_t n) {
    status = s;
    got = n;
  });
  while (reader.pending() > 0) reader.Wait();
  EXPECT_EQ(StatusErrno(status), EIO);
  EXPECT_TRUE(absl::StrContains(status.message(), "unexpected end of file"))
      << status;
  EXPECT_EQ(got, 0u);
  // The part that does exist arrived all the same.
  EXPECT_TRUE(std::equal(buf.begin(), buf.begin() + 1000, data_.begin()));
}

TEST_F(FileReaderTest, ReadErrorCarriesErrno) {
  int dir = ::open(
      ::getenv("TEST_TMPDIR") != nullptr ? ::getenv("TEST_TMPDIR") : "/tmp",
      O_RDONLY | O_DIRECTORY);
  ASSERT_GE(dir, 0);
  absl::Status status;
  {
    FileReader reader(dir);
    std::vector<uint8_t> buf(16);
    reader.Read(0, absl::MakeSpan(buf),
                [&](const absl::Status& s, size_t) { status = s; });
    reader.Wait();
  }
  ::close(dir);
  EXPECT_EQ(StatusErrno(status), EISDIR);
  EXPECT_TRUE(absl::StartsWith(status.message(), "pread: ")) << status;
}

TEST_F(FileReaderTest, DestroyingDropsQueuedReadsWithoutCallingThem) {
  size_t callbacks = 0;
  std::vector<std::vector<uint8_t>> buffers(64, std::vector<uint8_t>(65536));
  {
    FileReader reader(fd_);
    for (size_t i = 0; i < buffers.size(); ++i) {
      reader.Read(0, absl::MakeSpan(buffers[i]),
                  [&](const absl::Status&, size_t) { ++callbacks; });
    }
    reader.Kick();
  }  // must not hang, must not run callbacks
  EXPECT_EQ(callbacks, 0u);
}

}  // namespace
}  // namespace nbd::tool
