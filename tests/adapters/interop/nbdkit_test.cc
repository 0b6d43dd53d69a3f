// Interop with nbdkit plugins and filters, through every adapter.
#include <unistd.h>

#include <cstdio>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "tests/adapters/interop/every_command.h"
#include "tests/adapters/interop/interop_fixture.h"

namespace nbd::test {
namespace {

using NbdkitTest = InteropTest;

constexpr uint64_t kMiB = 1024 * 1024;

// Writes patterns at assorted offsets and sizes, reads them back.
void CheckIntegrity(Harness& h, uint64_t size) {
  struct Piece {
    uint64_t offset;
    size_t length;
  };
  std::vector<Piece> pieces = {
      {0, 512}, {4096, 65536}, {size - 4096, 4096}, {200000, 131072}};
  std::vector<std::vector<uint8_t>> data;
  std::vector<Op> writes;
  for (size_t i = 0; i < pieces.size(); ++i) {
    data.push_back(Pattern(pieces[i].length, static_cast<uint8_t>(i + 1)));
  }
  for (size_t i = 0; i < pieces.size(); ++i) {
    writes.push_back(WriteOp(pieces[i].offset, data[i]));
  }
  ASSERT_TRUE(h.Run(writes, kTimeout).ok());
  EXPECT_ALL_OK(writes);
  std::vector<std::vector<uint8_t>> back;
  for (const Piece& p : pieces) back.emplace_back(p.length, 0xee);
  std::vector<Op> reads;
  for (size_t i = 0; i < pieces.size(); ++i) {
    reads.push_back(ReadOp(pieces[i].offset, back[i]));
  }
  ASSERT_TRUE(h.Run(reads, kTimeout).ok());
  EXPECT_ALL_OK(reads);
  for (size_t i = 0; i < pieces.size(); ++i) EXPECT_EQ(back[i], data[i]) << i;
}

TEST_P(NbdkitTest, MemoryEveryAdvertisedCommandAndFlag) {
  SkipUnless("nbdkit");
  auto server = ServerProcess::StartNbdkit({"memory", "1M"});
  ASSERT_TRUE(server.ok()) << server.status();
  auto h = ConnectTo((*server)->socket_path());
  ASSERT_NE(h, nullptr);
  const Client& c = h->client();
  EXPECT_EQ(c.export_size(), kMiB);
  EXPECT_FALSE(c.is_read_only());
  // nbdkit memory advertises everything the walk can exercise.
  ASSERT_TRUE(c.can_flush() && c.can_trim() && c.can_zero() && c.can_fua() &&
              c.can_fast_zero() && c.can_cache() && c.can_df() &&
              c.can_block_status());
  EXPECT_TRUE(c.can_multi_conn());
  CheckIntegrity(*h, kMiB);
  PrintWalk(ExerciseEveryAdvertisedCommand(*h, kTimeout));
  EXPECT_TRUE(h->Shutdown(0, kTimeout).ok());
  EXPECT_EQ(h->client().phase(), ClientPhase::kClosed);
  EXPECT_TRUE(h->finished());
}

TEST_P(NbdkitTest, MemoryBlockStatusFollowsWrites) {
  SkipUnless("nbdkit");
  auto server = ServerProcess::StartNbdkit({"memory", "1M"});
  ASSERT_TRUE(server.ok()) << server.status();
  auto h = ConnectTo((*server)->socket_path());
  ASSERT_NE(h, nullptr);
  ASSERT_TRUE(h->client().can_block_status());
  std::vector<uint8_t> data = Pattern(65536, 3);
  // Separate batches: commands in flight together may run in any order.
  std::vector<Op> write = {WriteOp(524288, data)};
  ASSERT_TRUE(h->Run(write, kTimeout).ok());
  EXPECT_ALL_OK(write);
  std::vector<Op> ops = {SimpleOp(Op::kBlockStatus, 0, kMiB)};
  ASSERT_TRUE(h->Run(ops, kTimeout).ok());
  EXPECT_ALL_OK(ops);
  const std::vector<Extent>& e = ops[0].extents;
  EXPECT_EQ(TotalLength(e), kMiB);
  EXPECT_EQ(FlagsAt(e, 0, 0) & 1, 1u);       // hole before
  EXPECT_EQ(FlagsAt(e, 0, 524288) & 1, 0u);  // the written range
  EXPECT_EQ(FlagsAt(e, 0, 524288 + 65535) & 1, 0u);
  EXPECT_EQ(FlagsAt(e, 0, kMiB - 1) & 1, 1u);  // hole after
}

TEST_P(NbdkitTest, NullReadsZeroes) {
  SkipUnless("nbdkit");
  auto server = ServerProcess::StartNbdkit({"null", "1M"});
  ASSERT_TRUE(server.ok()) << server.status();
  auto h = ConnectTo((*server)->socket_path());
  ASSERT_NE(h, nullptr);
  std::vector<uint8_t> data = Pattern(4096, 1);
  std::vector<uint8_t> back(4096, 0xaa);
  std::vector<Op> ops = {WriteOp(0, data), ReadOp(0, back)};
  ASSERT_TRUE(h->Run(ops, kTimeout).ok());
  EXPECT_ALL_OK(ops);
  EXPECT_EQ(back, std::vector<uint8_t>(4096, 0));
  EXPECT_TRUE(h->Shutdown(0, kTimeout).ok());
}

TEST_P(NbdkitTest, PatternPluginContent) {
  SkipUnless("nbdkit");
  auto server = ServerProcess::StartNbdkit({"pattern", "1M"});
  ASSERT_TRUE(server.ok()) << server.status();
  auto h = ConnectTo((*server)->socket_path());
  ASSERT_NE(h, nullptr);
  EXPECT_TRUE(h->client().is_read_only());
  std::vector<uint8_t> a(4096), b(65536);
  std::vector<Op> ops = {ReadOp(8, a), ReadOp(500000, b)};
  ASSERT_TRUE(h->Run(ops, kTimeout).ok());
  EXPECT_ALL_OK(ops);
  // Each 8-byte word holds its own offset, big-endian.
  auto check = [](const std::vector<uint8_t>& v, uint64_t base) {
    for (size_t i = 0; i + 8 <= v.size(); i += 8) {
      uint64_t want = (base + i) & ~uint64_t{7};
      uint64_t got = 0;
      for (int k = 0; k < 8; ++k) got = (got << 8) | v[i + k];
      if (got != want) return false;
    }
    return true;
  };
  EXPECT_TRUE(check(a, 8));
  EXPECT_TRUE(check(b, 500000));
  // A write to a read-only export is refused by the core (EPERM).
  std::vector<Op> write = {WriteOp(0, a)};
  h->Run(write, kTimeout).IgnoreError();
  EXPECT_FALSE(write[0].status.ok());
  EXPECT_EQ(StatusErrno(write[0].status), EPERM);
}

TEST_P(NbdkitTest, DataPluginBlockStatusLayout) {
  SkipUnless("nbdkit");
  auto server = ServerProcess::StartNbdkit(
      {"data", "data=1 2 3 @65536 4 5 6", "size=1M"});
  ASSERT_TRUE(server.ok()) << server.status();
  auto h = ConnectTo((*server)->socket_path());
  ASSERT_NE(h, nullptr);
  std::vector<uint8_t> head(3), mid(3);
  std::vector<Op> ops = {ReadOp(0, head), ReadOp(65536, mid),
                         SimpleOp(Op::kBlockStatus, 0, 1024 * 1024)};
  ASSERT_TRUE(h->Run(ops, kTimeout).ok());
  EXPECT_ALL_OK(ops);
  EXPECT_EQ(head, (std::vector<uint8_t>{1, 2, 3}));
  EXPECT_EQ(mid, (std::vector<uint8_t>{4, 5, 6}));
  const std::vector<Extent>& e = ops[2].extents;
  EXPECT_EQ(TotalLength(e), kMiB);
  EXPECT_EQ(FlagsAt(e, 0, 0), 0u);       // data
  EXPECT_EQ(FlagsAt(e, 0, 40000), 3u);   // hole, zero
  EXPECT_EQ(FlagsAt(e, 0, 65536), 0u);   // data
  EXPECT_EQ(FlagsAt(e, 0, 500000), 3u);  // hole, zero
}

TEST_P(NbdkitTest, SparseRandomHolesReadAsZeroes) {
  SkipUnless("nbdkit");
  auto server = ServerProcess::StartNbdkit({"sparse-random", "16M", "seed=42"});
  ASSERT_TRUE(server.ok()) << server.status();
  auto h = ConnectTo((*server)->socket_path());
  ASSERT_NE(h, nullptr);
  constexpr uint64_t kSize = 16 * kMiB;
  std::vector<Op> bs = {SimpleOp(Op::kBlockStatus, 0, kSize)};
  ASSERT_TRUE(h->Run(bs, kTimeout).ok());
  EXPECT_ALL_OK(bs);
  ASSERT_EQ(TotalLength(bs[0].extents), kSize);
  // Sample the first 64K of each extent: holes are zero, data is not.
  std::vector<std::vector<uint8_t>> bufs;
  std::vector<Op> reads;
  std::vector<bool> is_hole;
  uint64_t at = 0;
  for (const Extent& e : bs[0].extents) {
    bufs.emplace_back(std::min<uint64_t>(e.length, 65536));
    is_hole.push_back(e.flags & 1);
    at += e.length;
  }
  at = 0;
  for (size_t i = 0; i < bufs.size(); ++i) {
    reads.push_back(ReadOp(at, bufs[i]));
    at += bs[0].extents[i].length;
  }
  ASSERT_TRUE(h->Run(reads, kTimeout).ok());
  EXPECT_ALL_OK(reads);
  for (size_t i = 0; i < bufs.size(); ++i) {
    bool all_zero = std::all_of(bufs[i].begin(), bufs[i].end(),
                                [](uint8_t b) { return b == 0; });
    if (is_hole[i]) {
      EXPECT_TRUE(all_zero) << "extent " << i;
    } else {
      EXPECT_FALSE(all_zero) << "extent " << i;
    }
  }
}

TEST_P(NbdkitTest, SingleThroughConnectCommand) {
  SkipUnless("nbdkit");
  auto sp = adapters::ConnectCommand(
      {"nbdkit", "-s", "--exit-with-parent", "memory", "1M"});
  ASSERT_TRUE(sp.ok()) << sp.status();
  adapters::Connection conn;
  conn.fd = sp->fd;
  conn.subprocess = *sp;
  std::unique_ptr<Harness> h = NewHarness();
  ASSERT_TRUE(h->Connect(conn.fd, {}, kTimeout).ok());
  CheckIntegrity(*h, kMiB);
  EXPECT_TRUE(h->Shutdown(0, kTimeout).ok());
  EXPECT_EQ(h->client().phase(), ClientPhase::kClosed);
  h.reset();
  conn.fd = -1;  // closed by the adapter
  EXPECT_TRUE(adapters::StopSubprocess(*conn.subprocess).ok());
}

TEST_P(NbdkitTest, Oldstyle) {
  SkipUnless("nbdkit");
  auto server = ServerProcess::StartNbdkit({"-o", "memory", "1M"});
  ASSERT_TRUE(server.ok()) << server.status();
  auto h = ConnectTo((*server)->socket_path());
  ASSERT_NE(h, nullptr);
  EXPECT_EQ(h->client().protocol(), ProtocolVariant::kOldstyle);
  EXPECT_EQ(h->client().export_size(), kMiB);
  CheckIntegrity(*h, kMiB);
  EXPECT_TRUE(h->Shutdown(0, kTimeout).ok());
}

TEST_P(NbdkitTest, ErrorFilterFailsOnlyThoseCommands) {
  SkipUnless("nbdkit");
  auto dir = MakeTempDir();
  ASSERT_TRUE(dir.ok());
  std::string inject = *dir + "/inject";
  auto server = ServerProcess::StartNbdkit(
      {"--filter=error", "memory", "1M", "error-pwrite=EIO",
       "error-pwrite-rate=100%", "error-pwrite-file=" + inject});
  ASSERT_TRUE(server.ok()) << server.status();
  auto h = ConnectTo((*server)->socket_path());
  ASSERT_NE(h, nullptr);
  std::ofstream(inject) << "x";
  std::vector<uint8_t> data = Pattern(4096, 5);
  std::vector<uint8_t> back(4096, 0xaa);
  std::vector<Op> failing = {WriteOp(0, data), ReadOp(0, back)};
  ASSERT_TRUE(h->Run(failing, kTimeout).ok());
  EXPECT_EQ(failing[0].completions, 1);
  EXPECT_EQ(StatusErrno(failing[0].status), EIO) << failing[0].status;
  EXPECT_TRUE(failing[1].status.ok()) << failing[1].status;
  EXPECT_EQ(back, std::vector<uint8_t>(4096, 0));
  ::unlink(inject.c_str());
  // The connection stays usable.
  // Separate batches: commands in flight together may run in any order.
  std::vector<Op> ok = {WriteOp(0, data)};
  ASSERT_TRUE(h->Run(ok, kTimeout).ok());
  EXPECT_ALL_OK(ok);
  std::vector<Op> read = {ReadOp(0, back)};
  ASSERT_TRUE(h->Run(read, kTimeout).ok());
  EXPECT_ALL_OK(read);
  EXPECT_EQ(back, data);
  EXPECT_TRUE(h->Shutdown(0, kTimeout).ok());
  ::rmdir(dir->c_str());
}

// The eval plugin serves a file and fails reads and writes that touch
// [kBadStart, kBadEnd) with EIO. Commands to both ranges go out in one batch
// (in flight together for epoll and io_uring): exactly the ones in the bad
// range fail, and the connection carries on.
TEST_P(NbdkitTest, EioOnChosenRangeFailsOnlyThoseCommands) {
  SkipUnless("nbdkit");
  constexpr uint64_t kBadStart = 512 * 1024, kBadEnd = kBadStart + 65536;
  auto dir = MakeTempDir();
  ASSERT_TRUE(dir.ok());
  std::string disk = *dir + "/disk";
  std::ofstream(disk).close();
  ASSERT_EQ(::truncate(disk.c_str(), kMiB), 0);
  // $3 is the count, $4 the offset. pwrite drains its data before failing
  // so nbdkit never writes into a closed pipe.
  std::string bad =
      absl::StrCat("if [ $4 -lt ", kBadEnd, " ] && [ $(($4+$3)) -gt ",
                   kBadStart, " ]; then ");
  auto server = ServerProcess::StartNbdkit(
      {"eval", "thread_model=echo parallel",
       absl::StrCat("get_size=echo ", kMiB),
       absl::StrCat(
           "pread=", bad, "echo 'EIO bad range' >&2; exit 1; fi; ", "dd if=",
           disk, " skip=$4 count=$3 iflag=count_bytes,skip_bytes 2>/dev/null"),
       absl::StrCat("pwrite=", bad,
                    "cat >/dev/null; echo 'EIO bad range' >&2; exit 1; fi; ",
                    "dd of=", disk,
                    " seek=$4 conv=notrunc oflag=seek_bytes 2>/dev/null")});
  ASSERT_TRUE(server.ok()) << server.status();
  auto h = ConnectTo((*server)->socket_path());
  ASSERT_NE(h, nullptr);
  ASSERT_FALSE(h->client().is_read_only());

  std::vector<uint8_t> a = Pattern(4096, 31), b = Pattern(8192, 32);
  std::vector<uint8_t> c = Pattern(4096, 33);
  std::vector<uint8_t> zeroes(16384, 0xaa), bad_read(4096, 0xaa);
  std::vector<Op> ops = {
      WriteOp(0, a),                       // good
      WriteOp(kBadStart, c),               // bad
      ReadOp(262144, zeroes),              // good
      ReadOp(kBadStart + 8192, bad_read),  // bad
      WriteOp(131072, b),                  // good
      WriteOp(kBadEnd - 4096 - 100, c),    // bad: straddles the end
      WriteOp(kBadEnd, c),                 // good: just after
  };
  const std::vector<bool> fails = {false, true, false, true,
                                   false, true, false};
  ASSERT_TRUE(h->Run(ops, kTimeout).ok());
  for (size_t i = 0; i < ops.size(); ++i) {
    EXPECT_TRUE(ops[i].issued) << i;
    EXPECT_EQ(ops[i].completions, 1) << i;
    if (fails[i]) {
      EXPECT_EQ(StatusErrno(ops[i].status), EIO) << i << ": " << ops[i].status;
    } else {
      EXPECT_TRUE(ops[i].status.ok()) << i << ": " << ops[i].status;
    }
  }
  EXPECT_EQ(zeroes, std::vector<uint8_t>(16384, 0));
  EXPECT_EQ(h->client().phase(), ClientPhase::kReady);

  // Still usable: the good writes landed, the bad range still fails.
  std::vector<uint8_t> ra(4096), rb(8192), rc(4096), again(512);
  std::vector<Op> check = {ReadOp(0, ra), ReadOp(131072, rb),
                           ReadOp(kBadEnd, rc), ReadOp(kBadStart, again)};
  ASSERT_TRUE(h->Run(check, kTimeout).ok());
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(check[i].completions, 1) << i;
    EXPECT_TRUE(check[i].status.ok()) << i << ": " << check[i].status;
  }
  EXPECT_EQ(check[3].completions, 1);
  EXPECT_EQ(StatusErrno(check[3].status), EIO) << check[3].status;
  EXPECT_EQ(ra, a);
  EXPECT_EQ(rb, b);
  EXPECT_EQ(rc, c);
  EXPECT_TRUE(h->Shutdown(0, kTimeout).ok());
  EXPECT_EQ(h->client().phase(), ClientPhase::kClosed);
  server->reset();
  ::unlink(disk.c_str());
  ::rmdir(dir->c_str());
}

TEST_P(NbdkitTest, DelayFilterManyInFlight) {
  SkipUnless("nbdkit");
  auto server =
      ServerProcess::StartNbdkit({"--filter=delay", "memory", "1M",
                                  "delay-read=20ms", "delay-write=20ms"});
  ASSERT_TRUE(server.ok()) << server.status();
  auto h = ConnectTo((*server)->socket_path());
  ASSERT_NE(h, nullptr);
  CheckIntegrity(*h, kMiB);
  EXPECT_TRUE(h->Shutdown(0, kTimeout).ok());
}

TEST_P(NbdkitTest, BlocksizeFilterSplitsLargeRequests) {
  SkipUnless("nbdkit");
  auto server = ServerProcess::StartNbdkit(
      {"--filter=blocksize", "memory", "1M", "minblock=512", "maxdata=16384"});
  ASSERT_TRUE(server.ok()) << server.status();
  auto h = ConnectTo((*server)->socket_path());
  ASSERT_NE(h, nullptr);
  CheckIntegrity(*h, kMiB);
}

TEST_P(NbdkitTest, NoextentsFilterReportsAllData) {
  SkipUnless("nbdkit");
  auto server =
      ServerProcess::StartNbdkit({"--filter=noextents", "memory", "1M"});
  ASSERT_TRUE(server.ok()) << server.status();
  auto h = ConnectTo((*server)->socket_path());
  ASSERT_NE(h, nullptr);
  if (!h->client().can_block_status()) GTEST_SKIP() << "no block status";
  std::vector<Op> bs = {SimpleOp(Op::kBlockStatus, 0, kMiB)};
  ASSERT_TRUE(h->Run(bs, kTimeout).ok());
  EXPECT_ALL_OK(bs);
  ASSERT_FALSE(bs[0].extents.empty());
  for (const Extent& e : bs[0].extents) EXPECT_EQ(e.flags, 0u);
}

TEST_P(NbdkitTest, MultiConnDisjointWritesVisibleOnAnotherConnection) {
  SkipUnless("nbdkit");
  auto server = ServerProcess::StartNbdkit({"memory", "1M"});
  ASSERT_TRUE(server.ok()) << server.status();
  constexpr int kWriters = 3;
  constexpr size_t kChunk = 65536;
  std::vector<std::unique_ptr<Harness>> writers;
  std::vector<std::vector<uint8_t>> data;
  for (int i = 0; i < kWriters; ++i) {
    writers.push_back(ConnectTo((*server)->socket_path()));
    ASSERT_NE(writers.back(), nullptr);
    ASSERT_TRUE(writers.back()->client().can_multi_conn());
    data.push_back(Pattern(kChunk, static_cast<uint8_t>(40 + i)));
  }
  for (int i = 0; i < kWriters; ++i) {
    // The flush goes after the write has completed: it only covers
    // completed writes.
    std::vector<Op> write = {WriteOp(i * kChunk, data[i])};
    ASSERT_TRUE(writers[i]->Run(write, kTimeout).ok());
    EXPECT_ALL_OK(write);
    std::vector<Op> flush = {SimpleOp(Op::kFlush)};
    ASSERT_TRUE(writers[i]->Run(flush, kTimeout).ok());
    EXPECT_ALL_OK(flush);
  }
  auto reader = ConnectTo((*server)->socket_path());
  ASSERT_NE(reader, nullptr);
  std::vector<uint8_t> back(kWriters * kChunk);
  std::vector<Op> read = {ReadOp(0, back)};
  ASSERT_TRUE(reader->Run(read, kTimeout).ok());
  EXPECT_ALL_OK(read);
  for (int i = 0; i < kWriters; ++i) {
    EXPECT_TRUE(
        std::equal(data[i].begin(), data[i].end(), back.begin() + i * kChunk))
        << "writer " << i;
  }
  for (auto& w : writers) EXPECT_TRUE(w->Shutdown(0, kTimeout).ok());
  EXPECT_TRUE(reader->Shutdown(0, kTimeout).ok());
}

TEST_P(NbdkitTest, OptionMode) {
  SkipUnless("nbdkit");
  auto server = ServerProcess::StartNbdkit({"memory", "1M"});
  ASSERT_TRUE(server.ok()) << server.status();
  ClientOptions options;
  options.option_mode = true;
  auto h = ConnectTo((*server)->socket_path(), options);
  ASSERT_NE(h, nullptr);
  EXPECT_EQ(h->client().phase(), ClientPhase::kNegotiating);
  auto list = h->OptList(kTimeout);
  ASSERT_TRUE(list.ok()) << list.status();
  EXPECT_EQ(*list, std::vector<std::string>{""});
  EXPECT_TRUE(h->OptInfo("", kTimeout).ok());
  EXPECT_EQ(h->client().export_size(), kMiB);
  auto contexts = h->OptListMetaContext({"base:"}, kTimeout);
  ASSERT_TRUE(contexts.ok()) << contexts.status();
  bool has_base = false;
  for (const MetaContext& m : *contexts)
    has_base |= m.name == "base:allocation";
  EXPECT_TRUE(has_base);
  ASSERT_TRUE(h->OptGo(kTimeout).ok());
  EXPECT_EQ(h->client().phase(), ClientPhase::kReady);
  CheckIntegrity(*h, kMiB);
  EXPECT_TRUE(h->Shutdown(0, kTimeout).ok());
}

TEST_P(NbdkitTest, OptAbortEndsCleanly) {
  SkipUnless("nbdkit");
  auto server = ServerProcess::StartNbdkit({"memory", "1M"});
  ASSERT_TRUE(server.ok()) << server.status();
  ClientOptions options;
  options.option_mode = true;
  auto h = ConnectTo((*server)->socket_path(), options);
  ASSERT_NE(h, nullptr);
  EXPECT_TRUE(h->OptAbort(kTimeout).ok());
  EXPECT_EQ(h->client().phase(), ClientPhase::kClosed);
  EXPECT_TRUE(h->finished());
}

// Reports (does not assert) system calls per 4 KiB read: sequential for
// blocking, batches of 16 in flight for epoll and io_uring; with exact
// receives (zero-copy, recv_readahead 0) and with 64 KiB read-ahead.
TEST_P(NbdkitTest, SyscallsPerOperation) {
  SkipUnless("nbdkit");
  auto server = ServerProcess::StartNbdkit({"memory", "1M"});
  ASSERT_TRUE(server.ok()) << server.status();
  for (size_t readahead : {size_t{0}, size_t{65536}}) {
    ClientOptions options;
    options.recv_readahead = readahead;
    auto h = ConnectTo((*server)->socket_path(), options);
    ASSERT_NE(h, nullptr);
    constexpr int kBatches = 16, kPerBatch = 16;
    std::vector<std::vector<uint8_t>> bufs(kPerBatch,
                                           std::vector<uint8_t>(4096));
    adapters::SyscallCounters before = counters_;
    for (int b = 0; b < kBatches; ++b) {
      std::vector<Op> ops;
      for (int i = 0; i < kPerBatch; ++i) {
        ops.push_back(ReadOp(i * 4096, bufs[i]));
      }
      ASSERT_TRUE(h->Run(ops, kTimeout).ok());
      EXPECT_ALL_OK(ops);
    }
    const adapters::SyscallCounters& a = counters_;
    double n = kBatches * kPerBatch;
    double per_op = (a.total() - before.total()) / n;
    std::printf(
        "[%s readahead=%zu] syscalls/read: %.2f (recv %.2f send %.2f poll "
        "%.2f epoll_wait %.2f epoll_ctl %.2f io_uring_enter %.2f)\n",
        AdapterName(GetParam()), readahead, per_op, (a.recv - before.recv) / n,
        (a.send - before.send) / n, (a.poll - before.poll) / n,
        (a.epoll_wait - before.epoll_wait) / n,
        (a.epoll_ctl - before.epoll_ctl) / n,
        (a.io_uring_enter - before.io_uring_enter) / n);
    RecordProperty(absl::StrCat("syscalls_per_read_readahead_", readahead),
                   absl::StrCat(per_op));
    EXPECT_GT(per_op, 0);
    EXPECT_TRUE(h->Shutdown(0, kTimeout).ok());
  }
}

NBD_INSTANTIATE_FOR_ALL_ADAPTERS(NbdkitTest);

}  // namespace
}  // namespace nbd::test
