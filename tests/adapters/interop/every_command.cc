#include "tests/adapters/interop/every_command.h"

#include <algorithm>
#include <cerrno>
#include <cstdio>

#include "absl/strings/str_join.h"
#include "gtest/gtest.h"
#include "protocol/client/client.h"
#include "protocol/constants.h"
#include "protocol/status.h"
#include "tests/adapters/interop/interop_fixture.h"

namespace nbd::test {
namespace {

constexpr uint64_t kK = 64 * 1024;  // every piece; aligned for any server

struct Batch {
  std::vector<Op> ops;
  std::vector<std::string> names;
  void Add(std::string name, Op op) {
    names.push_back(std::move(name));
    ops.push_back(op);
  }
};

// Runs `b`; every op must complete once with OK (or ENOTSUP where
// `may_be_unsupported` says so). Appends the names to `log`.
void RunChecked(Harness& h, Batch& b, absl::Duration timeout,
                std::vector<std::string>& log,
                const std::vector<bool>& may_be_unsupported = {}) {
  absl::Status s = h.Run(b.ops, timeout);
  ASSERT_TRUE(s.ok()) << s;
  for (size_t i = 0; i < b.ops.size(); ++i) {
    const Op& op = b.ops[i];
    EXPECT_TRUE(op.issued) << b.names[i] << " " << i << ": " << op.status;
    EXPECT_EQ(op.completions, 1) << b.names[i] << " " << i;
    bool tolerated = i < may_be_unsupported.size() && may_be_unsupported[i] &&
                     StatusErrno(op.status) == ENOTSUP;
    EXPECT_TRUE(op.status.ok() || tolerated) << b.names[i] << ": " << op.status;
    if (b.names[i].empty()) continue;  // setup, not worth listing
    log.push_back(b.names[i] + (tolerated ? " (ENOTSUP)" : ""));
  }
}

}  // namespace

std::vector<std::string> ExerciseEveryAdvertisedCommand(
    Harness& h, absl::Duration timeout) {
  std::vector<std::string> log;
  const Client& c = h.client();
  const uint16_t tf = c.transmission_flags();
  const bool writable = (tf & kTransmitReadOnly) == 0;
  const bool fua = (tf & kTransmitSendFua) != 0;
  const bool df = (tf & kTransmitSendDf) != 0 && c.structured_replies();
  EXPECT_GE(c.export_size().value_or(0), 16 * kK);

  // Layout of the scratch MiB, in 64 KiB pieces:
  //   0: WRITE   1: WRITE+FUA   2: TRIM   3: TRIM+FUA
  //   4..8: WRITE_ZEROES (plain, FUA, NO_HOLE, FUA|NO_HOLE, FAST_ZERO)
  std::vector<std::vector<uint8_t>> data;
  for (int i = 0; i < 9; ++i) data.push_back(Pattern(kK, 50 + i));

  if (writable) {
    Batch w;
    w.Add("WRITE", WriteOp(0, data[0]));
    if (fua) w.Add("WRITE+FUA", WriteOp(kK, data[1], kCmdFlagFua));
    // Content for the ranges zeroed below, so zeroing is visible.
    if (tf & kTransmitSendWriteZeroes) {
      for (int i = 4; i < 9; ++i) w.Add("", WriteOp(i * kK, data[i]));
    }
    RunChecked(h, w, timeout, log);
  }

  // Reads, plain and DF, of the same bytes: both see what was written.
  std::vector<uint8_t> plain(2 * kK), with_df(2 * kK);
  Batch r;
  r.Add("READ", ReadOp(0, plain));
  if (df) r.Add("READ+DF", ReadOp(0, with_df, kCmdFlagDf));
  RunChecked(h, r, timeout, log);
  if (df) {
    EXPECT_EQ(plain, with_df);
  }
  if (writable) {
    EXPECT_TRUE(std::equal(data[0].begin(), data[0].end(), plain.begin()));
    if (fua) {
      EXPECT_TRUE(
          std::equal(data[1].begin(), data[1].end(), plain.begin() + kK));
    }
  }

  Batch other;
  if (tf & kTransmitSendFlush) other.Add("FLUSH", SimpleOp(Op::kFlush));
  if (writable && (tf & kTransmitSendTrim)) {
    // Trimmed content is unspecified: only the result is checked.
    other.Add("TRIM", SimpleOp(Op::kTrim, 2 * kK, kK));
    if (fua)
      other.Add("TRIM+FUA", SimpleOp(Op::kTrim, 3 * kK, kK, kCmdFlagFua));
  }
  if (tf & kTransmitSendCache)
    other.Add("CACHE", SimpleOp(Op::kCache, 0, 2 * kK));
  if (c.can_block_status()) {
    other.Add("BLOCK_STATUS", SimpleOp(Op::kBlockStatus, 0, 16 * kK));
    other.Add("BLOCK_STATUS+REQ_ONE",
              SimpleOp(Op::kBlockStatus, 0, 16 * kK, kCmdFlagReqOne));
  }
  if (!other.ops.empty()) RunChecked(h, other, timeout, log);
  for (size_t i = 0; i < other.ops.size(); ++i) {
    const Op& op = other.ops[i];
    if (op.kind != Op::kBlockStatus || !op.status.ok()) continue;
    EXPECT_FALSE(op.extents.empty()) << other.names[i];
    EXPECT_LE(TotalLength(op.extents), 16 * kK) << other.names[i];
    if (op.flags & kCmdFlagReqOne) {
      EXPECT_EQ(op.extents.size(), 1u) << other.names[i];
    }
  }

  if (writable && (tf & kTransmitSendWriteZeroes)) {
    Batch z;
    std::vector<bool> may_fail;
    z.Add("WRITE_ZEROES", SimpleOp(Op::kZero, 4 * kK, kK));
    if (fua) {
      z.Add("WRITE_ZEROES+FUA", SimpleOp(Op::kZero, 5 * kK, kK, kCmdFlagFua));
    }
    z.Add("WRITE_ZEROES+NO_HOLE",
          SimpleOp(Op::kZero, 6 * kK, kK, kCmdFlagNoHole));
    if (fua) {
      z.Add("WRITE_ZEROES+FUA+NO_HOLE",
            SimpleOp(Op::kZero, 7 * kK, kK, kCmdFlagFua | kCmdFlagNoHole));
    }
    may_fail.resize(z.ops.size(), false);
    if (tf & kTransmitSendFastZero) {
      z.Add("WRITE_ZEROES+FAST_ZERO",
            SimpleOp(Op::kZero, 8 * kK, kK, kCmdFlagFastZero));
      may_fail.push_back(true);
    }
    RunChecked(h, z, timeout, log, may_fail);
    std::vector<uint8_t> back(5 * kK, 0xee);
    std::vector<Op> read = {ReadOp(4 * kK, back)};
    EXPECT_TRUE(h.Run(read, timeout).ok());
    EXPECT_ALL_OK(read);
    for (size_t i = 0; i < z.ops.size(); ++i) {
      const Op& op = z.ops[i];
      if (!op.status.ok()) continue;  // FAST_ZERO refused: nothing promised
      auto at = back.begin() + (op.offset - 4 * kK);
      EXPECT_TRUE(std::all_of(at, at + kK, [](uint8_t b) { return b == 0; }))
          << z.names[i] << ": not zeroes";
    }
  }
  return log;
}

void PrintWalk(const std::vector<std::string>& walk) {
  std::printf("exercised: %s\n", absl::StrJoin(walk, ", ").c_str());
}

}  // namespace nbd::test
