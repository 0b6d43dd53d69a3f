// Hostile clients against `nbd serve`, the tool as a subprocess, over raw
// sockets (tests/adapters/server/raw_client.h): malformed and oversized
// options and requests, floods of options and of pipelined requests that
// nobody reads the replies of, half messages then stalls, extended-header
// requests whose payload lengths do not fit, many idle connections.
//
// One server serves the whole suite, so damage would add up. After every
// case (TearDown) the server must still be running, serve a fresh client
// (a write read back), be back at the descriptors it had before the suite
// (/proc/PID/fd), and its peak resident memory during the case
// (/proc/PID/status VmHWM, reset before each case through
// /proc/PID/clear_refs) must have stayed within the case's stated bound
// over what it had when the case began. Waits are bounded and generous;
// no result depends on how fast anything ran.
//
// The server runs with --handshake-timeout 2 --max-queued-replies 4M and
// the defaults otherwise (1024 connections, 32 MiB maximum payload).
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <functional>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "protocol/constants.h"
#include "protocol/wire.h"
#include "tests/adapters/server/raw_client.h"
#include "tests/tools/run_tool.h"

namespace nbd::test {
namespace {

constexpr size_t kMiB = size_t{1} << 20;
constexpr size_t kMaxPayload = 32 * kMiB;  // the export's max_block
constexpr size_t kQueuedBound = 4 * kMiB;  // --max-queued-replies
constexpr absl::Duration kWait = absl::Seconds(30);

#if defined(__SANITIZE_ADDRESS__)
// Under AddressSanitizer the server runs without a quarantine (freed
// memory is reused at once instead of held back, which would look like
// growth) and its shadow memory and redzones cost extra: bounds double.
constexpr bool kAsan = true;
constexpr size_t kBoundFactor = 2;
#else
constexpr bool kAsan = false;
constexpr size_t kBoundFactor = 1;
#endif

// ---- /proc of the server process -------------------------------------------

// A "Vm...:" field of /proc/PID/status in bytes; 0 if missing.
size_t StatusBytes(pid_t pid, const std::string& field) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/status"));
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(field + ":", 0) != 0) continue;
    std::vector<std::string> parts =
        absl::StrSplit(line.substr(field.size() + 1), absl::ByAnyChar(" \t"),
                       absl::SkipEmpty());
    size_t kb = 0;
    if (!parts.empty() && absl::SimpleAtoi(parts[0], &kb)) return kb * 1024;
  }
  return 0;
}

// Resets VmHWM to the current RSS.
bool ResetPeak(pid_t pid) {
  std::ofstream out(absl::StrCat("/proc/", pid, "/clear_refs"));
  out << "5";
  out.flush();
  return out.good();
}

size_t CountFds(pid_t pid) {
  size_t n = 0;
  std::unique_ptr<FILE, int (*)(FILE*)> ls(
      popen(absl::StrCat("ls /proc/", pid, "/fd").c_str(), "r"), pclose);
  if (!ls) return 0;
  char buf[256];
  while (fgets(buf, sizeof(buf), ls.get()) != nullptr) ++n;
  return n;
}

// Running, not a zombie (the Child owns the reaping).
bool Alive(pid_t pid) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/stat"));
  std::string stat;
  if (!std::getline(in, stat)) return false;
  const size_t paren = stat.rfind(')');
  return paren != std::string::npos && paren + 2 < stat.size() &&
         stat[paren + 2] != 'Z' && stat[paren + 2] != 'X';
}

bool WaitUntil(const std::function<bool()>& done,
               absl::Duration limit = kWait) {
  const absl::Time deadline = absl::Now() + limit;
  while (!done()) {
    if (absl::Now() > deadline) return false;
    absl::SleepFor(absl::Milliseconds(10));
  }
  return true;
}

// Bytes of `n` requests of `make(i)`.
Bytes Repeat(int n, const std::function<Bytes(int)>& make) {
  Bytes out;
  for (int i = 0; i < n; ++i) {
    Bytes one = make(i);
    out.insert(out.end(), one.begin(), one.end());
  }
  return out;
}

// Sends as much of `bytes` as the server takes, to each client in turn,
// until all is sent or no socket took a byte for `stall`: the server
// stopped reading. Returns the bytes each client got out.
std::vector<size_t> SendUntilStalled(std::vector<RawClient*> clients,
                                     const Bytes& bytes,
                                     absl::Duration stall = absl::Seconds(2)) {
  std::vector<size_t> sent(clients.size(), 0);
  while (true) {
    bool progress = false;
    bool all_done = true;
    for (size_t i = 0; i < clients.size(); ++i) {
      if (sent[i] == bytes.size()) continue;
      all_done = false;
      const size_t n = clients[i]->SendSome(ByteSpan(bytes).subspan(sent[i]));
      sent[i] += n;
      progress = progress || n > 0;
    }
    if (all_done) return sent;
    if (progress) continue;
    std::vector<pollfd> fds;
    for (size_t i = 0; i < clients.size(); ++i) {
      if (sent[i] < bytes.size()) fds.push_back({clients[i]->fd(), POLLOUT, 0});
    }
    const int n = poll(fds.data(), fds.size(),
                       static_cast<int>(absl::ToInt64Milliseconds(stall)));
    if (n <= 0) return sent;  // stalled: the server is not reading
    for (const pollfd& p : fds) {
      if (p.revents & (POLLERR | POLLHUP)) return sent;
    }
  }
}

class ServeHostileTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    // Room for the many-connections case on the client side.
    rlimit rl{};
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
      rl.rlim_cur = rl.rlim_max;
      setrlimit(RLIMIT_NOFILE, &rl);
    }
    if (kAsan) {
      const char* asan = std::getenv("ASAN_OPTIONS");
      const std::string options = absl::StrCat(
          asan != nullptr ? asan : "", asan != nullptr ? ":" : "",
          "quarantine_size_mb=0:thread_local_quarantine_size_kb=0");
      setenv("ASAN_OPTIONS", options.c_str(), 1);
    }
    char tmpl[] = "/tmp/nbdhst.XXXXXX";  // short: sun_path is 108 bytes
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = new std::string(tmpl);
    socket_ = new std::string(*dir_ + "/sock");
    server_ = new Child({NbdBinary(), "serve", "--memory", "64M", "--socket",
                         *socket_, "--handshake-timeout", "2",
                         "--max-queued-replies", "4M"});
    ASSERT_TRUE(WaitForUnixSocket(*socket_, kWait));
    // A first session, so what the server allocates once is in the
    // baseline.
    Roundtrip(1);
    ASSERT_TRUE(WaitUntil([] {
      baseline_fds_ = CountFds(server_->pid());
      absl::SleepFor(absl::Milliseconds(50));
      return CountFds(server_->pid()) == baseline_fds_;
    }));
  }
  static void TearDownTestSuite() {
    const int status = server_->Signal(SIGTERM);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
    delete server_;
    ::unlink(socket_->c_str());
    ::rmdir(dir_->c_str());
    delete socket_;
    delete dir_;
  }

  void SetUp() override {
    ASSERT_TRUE(Alive(pid()));
    RestartMeasurement();
  }
  // The health checks every case ends with.
  void TearDown() override {
    const size_t peak = StatusBytes(pid(), "VmHWM");
    const size_t growth = peak > start_rss_ ? peak - start_rss_ : 0;
    memory_bound_ *= kBoundFactor;
    const std::string name =
        ::testing::UnitTest::GetInstance()->current_test_info()->name();
    std::printf(
        "[memory] %s: RSS at start %zu KiB, peak %zu KiB (+%zu KiB, "
        "bound +%zu KiB)\n",
        name.c_str(), start_rss_ / 1024, peak / 1024, growth / 1024,
        memory_bound_ / 1024);
    RecordProperty("peak_rss_growth_kib", std::to_string(growth / 1024));
    EXPECT_LE(growth, memory_bound_) << "peak RSS grew by " << growth;
    ASSERT_TRUE(Alive(pid())) << "nbd serve died";
    Roundtrip(next_cookie_++);
    size_t fds = 0;
    EXPECT_TRUE(WaitUntil([&] {
      fds = CountFds(pid());
      return fds == baseline_fds_;
    })) << fds
        << " descriptors open, " << baseline_fds_ << " before";
  }

  static pid_t pid() { return server_->pid(); }
  // Resets the peak to now, e.g. after the case put data into the export.
  void RestartMeasurement() {
    ASSERT_TRUE(ResetPeak(pid()));
    start_rss_ = StatusBytes(pid(), "VmRSS");
  }
  static std::unique_ptr<RawClient> Connect() {
    auto c = RawClient::ConnectUnix(*socket_);
    EXPECT_NE(c, nullptr) << "connect " << *socket_;
    return c;
  }
  static std::unique_ptr<RawClient> Transmission(bool extended = true) {
    auto c = Connect();
    if (c == nullptr) return nullptr;
    EXPECT_TRUE(c->Handshake(extended));
    return c;
  }
  // A fresh client writes 4 KiB and reads them back.
  static void Roundtrip(uint64_t cookie) {
    auto c = Transmission();
    ASSERT_NE(c, nullptr);
    const uint64_t offset = 60 * kMiB + (cookie % 64) * 4096;
    Bytes data(4096, static_cast<uint8_t>(cookie));
    ASSERT_TRUE(c->Send(RawRequest(true, Command::kWrite, cookie, offset,
                                   data.size(), kCmdFlagPayloadLen)));
    ASSERT_TRUE(c->Send(data));
    std::optional<RawReply> w = c->ReadReply();
    ASSERT_TRUE(w.has_value());
    EXPECT_EQ(w->cookie, cookie);
    EXPECT_EQ(w->error, 0u);
    ASSERT_TRUE(c->Send(
        RawRequest(true, Command::kRead, cookie + 1, offset, data.size())));
    std::optional<RawReply> r = c->ReadReply();
    ASSERT_TRUE(r.has_value());
    EXPECT_EQ(r->cookie, cookie + 1);
    ASSERT_EQ(r->payload.size(), 8 + data.size());  // OFFSET_DATA
    EXPECT_EQ(Bytes(r->payload.begin() + 8, r->payload.end()), data);
    ASSERT_TRUE(c->Send(RawRequest(true, Command::kDisc, 0, 0, 0)));
    EXPECT_TRUE(c->WaitClosed());
  }
  // Reads one reply and checks its cookie and error.
  static void ExpectReply(RawClient& c, uint64_t cookie, uint32_t error) {
    std::optional<RawReply> r = c.ReadReply();
    ASSERT_TRUE(r.has_value()) << "no reply for cookie " << cookie;
    EXPECT_EQ(r->cookie, cookie);
    EXPECT_EQ(r->error, error) << "cookie " << cookie;
    EXPECT_TRUE(r->done());
  }

  size_t memory_bound_ = 8 * kMiB;  // default bound of a case
  size_t start_rss_ = 0;
  static inline uint64_t next_cookie_ = 1000;
  static inline std::string* dir_ = nullptr;
  static inline std::string* socket_ = nullptr;
  static inline Child* server_ = nullptr;
  static inline size_t baseline_fds_ = 0;
};

// ---- Handshake
// ---------------------------------------------------------------

TEST_F(ServeHostileTest, GarbageInsteadOfClientFlags) {
  for (const Bytes& junk :
       {Bytes{0xff, 0xff, 0xff, 0xff}, Bytes{0, 0, 0, 4},  // unknown flags
        Bytes(4096, 0x41)}) {
    auto c = Connect();
    ASSERT_TRUE(c->Recv(kNewstyleGreetingSize).has_value());
    c->Send(junk);
    EXPECT_TRUE(c->WaitClosed());
  }
}

TEST_F(ServeHostileTest, MalformedOptions) {
  // Bad option magic: the stream cannot be trusted; dropped.
  {
    auto c = Connect();
    ASSERT_TRUE(c->Greet());
    Bytes bad = RawOption(static_cast<uint32_t>(Option::kList));
    bad[0] ^= 0xff;
    c->Send(bad);
    EXPECT_TRUE(c->WaitClosed());
  }
  // An option longer than the server reads into memory (64 KiB) is skipped
  // and refused with ERR_TOO_BIG; the next option is answered.
  {
    auto c = Connect();
    ASSERT_TRUE(c->Greet());
    ASSERT_TRUE(c->Send(RawOption(static_cast<uint32_t>(Option::kInfo),
                                  Bytes(100 * 1024, 'x'))));
    auto r = c->ReadOptionReply();
    ASSERT_TRUE(r.has_value());
    EXPECT_EQ(r->first.type,
              static_cast<uint32_t>(OptionReplyType::kErrTooBig));
    ASSERT_TRUE(c->Send(RawOption(static_cast<uint32_t>(Option::kList))));
    r = c->ReadOptionReply();
    ASSERT_TRUE(r.has_value());
    EXPECT_EQ(r->first.option, static_cast<uint32_t>(Option::kList));
  }
  // A 4 GiB option: the server skips what arrives without storing it.
  {
    auto c = Connect();
    ASSERT_TRUE(c->Greet());
    auto h = EncodeOptionRequestHeader(
        {static_cast<uint32_t>(Option::kSetMetaContext), 0xffffffff});
    ASSERT_TRUE(c->Send(h));
    const Bytes chunk(kMiB, 0);
    for (int i = 0; i < 64; ++i) ASSERT_TRUE(c->Send(chunk));
  }
  // GO whose name length runs past the option: ERR_INVALID, still alive.
  {
    auto c = Connect();
    ASSERT_TRUE(c->Greet());
    Bytes go = EncodeInfoRequest({"", {}});
    go[3] = 200;  // name length 200 in a 6-byte option
    ASSERT_TRUE(c->Send(RawOption(static_cast<uint32_t>(Option::kGo), go)));
    auto r = c->ReadOptionReply();
    ASSERT_TRUE(r.has_value());
    EXPECT_TRUE(IsOptionReplyError(r->first.type));
    EXPECT_TRUE(c->Open());
  }
  // An unknown option, and STARTTLS with data: errors, still alive.
  {
    auto c = Connect();
    ASSERT_TRUE(c->Greet());
    for (uint32_t opt :
         {uint32_t{999}, static_cast<uint32_t>(Option::kStartTls)}) {
      ASSERT_TRUE(c->Send(RawOption(opt, Bytes{1, 2, 3})));
      auto r = c->ReadOptionReply();
      ASSERT_TRUE(r.has_value());
      EXPECT_TRUE(IsOptionReplyError(r->first.type)) << opt;
      if (opt == 999) {
        EXPECT_EQ(r->first.type,
                  static_cast<uint32_t>(OptionReplyType::kErrUnsup));
      }
    }
    EXPECT_TRUE(c->Open());
  }
  // EXPORT_NAME (which has no error reply) with an oversized name: dropped.
  {
    auto c = Connect();
    ASSERT_TRUE(c->Greet());
    c->Send(RawOption(static_cast<uint32_t>(Option::kExportName),
                      Bytes(100 * 1024, 'n')));
    EXPECT_TRUE(c->WaitClosed());
  }
}

// Options without end, and nobody reading the replies: the session gives up
// after max_options (1024).
TEST_F(ServeHostileTest, OptionFloodNobodyReads) {
  std::vector<std::unique_ptr<RawClient>> clients;
  std::vector<RawClient*> raw;
  for (int i = 0; i < 4; ++i) {
    clients.push_back(Connect());
    ASSERT_TRUE(clients.back()->Greet());
    raw.push_back(clients.back().get());
  }
  const Bytes flood = Repeat(5000, [](int) {
    return RawOption(static_cast<uint32_t>(Option::kList));
  });
  SendUntilStalled(raw, flood);
  for (auto& c : clients) EXPECT_TRUE(c->WaitClosed());
}

// Half a message, then silence: the handshake timeout (2 s) drops it.
TEST_F(ServeHostileTest, HalfHandshakeThenStall) {
  auto silent = Connect();  // not even the client flags
  auto half_flags = Connect();
  ASSERT_TRUE(half_flags->Send(Bytes{0, 0}));
  auto half_option = Connect();
  ASSERT_TRUE(half_option->Greet());
  ASSERT_TRUE(half_option->Send(
      ByteSpan(RawOption(static_cast<uint32_t>(Option::kGo))).first(11)));
  auto half_data = Connect();
  ASSERT_TRUE(half_data->Greet());
  Bytes go = RawOption(static_cast<uint32_t>(Option::kGo),
                       EncodeInfoRequest({"", {1, 2}}));
  ASSERT_TRUE(half_data->Send(ByteSpan(go).first(go.size() - 3)));
  for (RawClient* c :
       {silent.get(), half_flags.get(), half_option.get(), half_data.get()}) {
    EXPECT_TRUE(c->WaitClosed());
  }
}

// ---- Transmission
// --------------------------------------------------------------

TEST_F(ServeHostileTest, MalformedRequests) {
  for (bool extended : {false, true}) {
    SCOPED_TRACE(extended);
    auto c = Transmission(extended);
    ASSERT_NE(c, nullptr);
    auto R = [&](Command cmd, uint64_t cookie, uint64_t off, uint64_t len,
                 uint16_t flags = 0) {
      return RawRequest(extended, cmd, cookie, off, len, flags);
    };
    const uint16_t pl = extended ? kCmdFlagPayloadLen : 0;
    // Each is refused on its own; the connection lives.
    ASSERT_TRUE(c->Send(R(static_cast<Command>(77), 1, 0, 0)));
    ExpectReply(*c, 1, 22);  // unknown command: EINVAL
    ASSERT_TRUE(c->Send(R(Command::kRead, 2, 0, 512, 1u << 12)));
    ExpectReply(*c, 2, 22);  // unknown flag
    ASSERT_TRUE(c->Send(R(Command::kRead, 3, 64 * kMiB - 256, 512)));
    ExpectReply(*c, 3, 22);  // past the end
    ASSERT_TRUE(c->Send(R(Command::kTrim, 4, ~uint64_t{0} - 10, 512)));
    ExpectReply(*c, 4, 28);  // offset overflow: ENOSPC
    ASSERT_TRUE(c->Send(R(Command::kRead, 5, 0, kMaxPayload + 1)));
    ExpectReply(*c, 5, 75);  // above the maximum payload: EOVERFLOW
    ASSERT_TRUE(c->Send(R(Command::kBlockStatus, 6, 0, 4096)));
    ExpectReply(*c, 6, 22);  // no meta context negotiated
    ASSERT_TRUE(c->Send(R(Command::kResize, 7, 0, 4096)));
    ExpectReply(*c, 7, 22);
    ASSERT_TRUE(c->Send(R(Command::kWrite, 8, 0, 4, pl)));
    ASSERT_TRUE(c->Send(Bytes{1, 2, 3, 4}));
    ExpectReply(*c, 8, 0);  // and a good one still works
    // A bad magic ends it: the stream cannot be resynchronised.
    Bytes bad = R(Command::kRead, 9, 0, 512);
    bad[1] ^= 0x10;
    c->Send(bad);
    EXPECT_TRUE(c->WaitClosed());
  }
}

TEST_F(ServeHostileTest, OversizedWritePayloads) {
  memory_bound_ = 8 * kMiB;
  // Compact: a WRITE above the maximum payload but under 64 MiB is read
  // and dropped (not stored: the memory bound holds), then EOVERFLOW.
  {
    auto c = Transmission(false);
    const size_t len = 40 * kMiB;
    ASSERT_TRUE(c->Send(RawRequest(false, Command::kWrite, 1, 0, len)));
    const Bytes chunk(kMiB, 0x33);
    for (size_t i = 0; i < len / kMiB; ++i) ASSERT_TRUE(c->Send(chunk));
    ExpectReply(*c, 1, 75);
    EXPECT_TRUE(c->Open());
  }
  // Compact: 4 GiB: dropped at once.
  {
    auto c = Transmission(false);
    c->Send(RawRequest(false, Command::kWrite, 1, 0, 0xffffffff));
    EXPECT_TRUE(c->WaitClosed());
  }
}

// The extended-header payload rules (the bug this issue fixed: a WRITE
// without PAYLOAD_LEN used to swallow the next requests as data).
TEST_F(ServeHostileTest, ExtendedInconsistentPayloadLengths) {
  const uint64_t at = 8 * kMiB;  // a range nobody writes in this suite
  // WRITE without PAYLOAD_LEN: no payload. The 64 bytes after it are two
  // READ requests, answered as such; nothing is written.
  {
    auto c = Transmission();
    Bytes in = RawRequest(true, Command::kWrite, 1, at, 64);
    for (uint64_t cookie : {2, 3}) {
      Bytes r = RawRequest(true, Command::kRead, cookie, at, 64);
      in.insert(in.end(), r.begin(), r.end());
    }
    ASSERT_TRUE(c->Send(in));
    std::set<uint64_t> seen;
    for (int i = 0; i < 3; ++i) {
      std::optional<RawReply> r = c->ReadReply();
      ASSERT_TRUE(r.has_value());
      seen.insert(r->cookie);
      if (r->cookie == 1) {
        EXPECT_EQ(r->error, 22u);
      } else {
        EXPECT_EQ(r->error, 0u);
        // A hole (OFFSET_HOLE) or zeros: the request bytes were not data.
        if (r->type == static_cast<uint16_t>(ChunkType::kOffsetData)) {
          EXPECT_EQ(Bytes(r->payload.begin() + 8, r->payload.end()),
                    Bytes(64, 0));
        } else {
          EXPECT_EQ(r->type, static_cast<uint16_t>(ChunkType::kOffsetHole));
        }
      }
    }
    EXPECT_EQ(seen, (std::set<uint64_t>{1, 2, 3}));
  }
  // PAYLOAD_LEN on commands that take no payload: consumed, EINVAL, in
  // sync (BLOCK_STATUS's filter form is not advertised).
  {
    auto c = Transmission();
    Bytes filter = EncodeBlockStatusPayload({4096, {1}});
    ASSERT_TRUE(c->Send(RawRequest(true, Command::kBlockStatus, 4, 0,
                                   filter.size(), kCmdFlagPayloadLen)));
    ASSERT_TRUE(c->Send(filter));
    ExpectReply(*c, 4, 22);
    Bytes fake = RawRequest(true, Command::kWrite, 99, at, 0);
    ASSERT_TRUE(c->Send(RawRequest(true, Command::kRead, 5, 0, fake.size(),
                                   kCmdFlagPayloadLen)));
    ASSERT_TRUE(c->Send(fake));
    ExpectReply(*c, 5, 22);
    ASSERT_TRUE(c->Send(RawRequest(true, Command::kFlush, 6, 0, 0)));
    ExpectReply(*c, 6, 0);
  }
  // PAYLOAD_LEN above what the server discards (64 MiB; up to that a
  // payload is read and refused, as the spec asks for 2^25): dropped at
  // once, whatever the command, without waiting for the payload.
  for (uint64_t len : {uint64_t{kHardMaxPayload} + 1, uint64_t{1} << 63}) {
    for (Command cmd : {Command::kWrite, Command::kBlockStatus}) {
      auto c = Transmission();
      ASSERT_TRUE(
          c->Send(RawRequest(true, cmd, 7, 0, len, kCmdFlagPayloadLen)));
      EXPECT_TRUE(c->WaitClosed());
    }
  }
  // Compact requests after extended headers were agreed: the first 32
  // bytes have the wrong magic; dropped.
  {
    auto c = Transmission();
    Bytes two = RawRequest(false, Command::kRead, 8, 0, 512);
    Bytes more = RawRequest(false, Command::kRead, 9, 0, 512);
    two.insert(two.end(), more.begin(), more.end());
    c->Send(two);
    EXPECT_TRUE(c->WaitClosed());
  }
  // The range is still untouched.
  auto c = Transmission();
  ASSERT_TRUE(c->Send(RawRequest(true, Command::kRead, 9, at, 4096)));
  std::optional<RawReply> r = c->ReadReply();
  ASSERT_TRUE(r.has_value());
  EXPECT_NE(r->type, static_cast<uint16_t>(ChunkType::kOffsetData))
      << "data appeared at " << at;
}

// Half a request header or payload, then silence, then the client goes
// away: no timeout in transmission (like nbdkit and qemu-nbd), but the
// connection is freed once the client closes.
TEST_F(ServeHostileTest, HalfRequestsThenStall) {
  auto half_header = Transmission();
  ASSERT_TRUE(half_header->Send(
      ByteSpan(RawRequest(true, Command::kRead, 1, 0, 512)).first(13)));
  auto half_payload = Transmission();
  ASSERT_TRUE(half_payload->Send(RawRequest(true, Command::kWrite, 2, 0,
                                            kMaxPayload, kCmdFlagPayloadLen)));
  ASSERT_TRUE(half_payload->Send(Bytes(kMiB, 7)));
  // A pause only gives a wrongly closing server time to show it.
  absl::SleepFor(absl::Milliseconds(200));
  EXPECT_TRUE(half_header->Open());
  EXPECT_TRUE(half_payload->Open());
  // The WRITE buffer is reserved, but only what arrived is resident.
  memory_bound_ = 8 * kMiB;
}

// Pipelined READs, nobody reading the replies: each connection stops being
// read once 4 MiB of replies wait, so the server's memory stays flat
// however many requests come.
TEST_F(ServeHostileTest, PipelinedReadFloodNobodyReads) {
  // 8 MiB of data (not holes, so every reply carries its 1 MiB).
  {
    auto w = Transmission();
    const Bytes data(kMiB, 0xa5);
    for (uint64_t i = 0; i < 8; ++i) {
      ASSERT_TRUE(
          w->Send(RawRequest(true, Command::kWrite, i, 16 * kMiB + i * kMiB,
                             kMiB, kCmdFlagPayloadLen)));
      ASSERT_TRUE(w->Send(data));
      ExpectReply(*w, i, 0);
    }
  }
  RestartMeasurement();
  constexpr int kConnections = 4;
  // Per connection: the queued bound, the reply that crossed it and its
  // buffer's allocation slack; plus allocator overhead.
  memory_bound_ = kConnections * (kQueuedBound + 2 * kMiB) + 8 * kMiB;
  std::vector<std::unique_ptr<RawClient>> clients;
  std::vector<RawClient*> raw;
  for (int i = 0; i < kConnections; ++i) {
    clients.push_back(Transmission());
    raw.push_back(clients.back().get());
  }
  // 100000 requests (3 MiB, more than the socket buffers hold): 97 GiB of
  // replies if the server answered them all.
  const Bytes flood = Repeat(100000, [](int i) {
    return RawRequest(true, Command::kRead, i, 16 * kMiB + (i % 8) * kMiB,
                      kMiB);
  });
  std::vector<size_t> sent = SendUntilStalled(raw, flood);
  for (size_t s : sent) {
    EXPECT_LT(s, flood.size()) << "the server read every request";
  }
  // One of them reads now: its replies come again (a 1 MiB data chunk
  // each; the first 100 are enough to show it).
  const size_t requests = std::min<size_t>(100, sent[0] / kExtendedRequestSize);
  for (size_t i = 0; i < requests; ++i) {
    std::optional<RawReply> r = clients[0]->ReadReply();
    ASSERT_TRUE(r.has_value()) << i << " of " << requests;
    ASSERT_EQ(r->payload.size(), 8 + kMiB);
  }
  // The others go away without reading.
}

// Invalid requests are answered by the session itself; their error
// replies (with a message, larger than the requests) are bounded the same
// way.
TEST_F(ServeHostileTest, InvalidRequestFloodNobodyReads) {
  memory_bound_ = 2 * (kQueuedBound + kMiB) + 8 * kMiB;
  auto a = Transmission();
  auto b = Transmission(false);
  const Bytes extended = Repeat(200000, [](int i) {
    return RawRequest(true, Command::kWrite, i, 0, 1 << 20);  // no flag
  });
  const Bytes compact = Repeat(400000, [](int i) {
    return RawRequest(false, static_cast<Command>(99), i, 0, 0);
  });
  std::vector<size_t> sent_a = SendUntilStalled({a.get()}, extended);
  std::vector<size_t> sent_b = SendUntilStalled({b.get()}, compact);
  EXPECT_LT(sent_a[0], extended.size());
  EXPECT_LT(sent_b[0], compact.size());
}

// ---- Connections
// -------------------------------------------------------------

// Hundreds of idle connections (half never negotiating, half idle in
// transmission) lock nobody out under the default --max-connections 1024;
// the unfinished half is dropped by the handshake timeout.
TEST_F(ServeHostileTest, ManyIdleConnections) {
  constexpr int kEach = 300;
  memory_bound_ = 32 * kMiB;
  std::vector<std::unique_ptr<RawClient>> negotiating, ready;
  for (int i = 0; i < kEach; ++i) {
    negotiating.push_back(Connect());
    ASSERT_NE(negotiating.back(), nullptr) << i;
    ready.push_back(Transmission());
    ASSERT_NE(ready.back(), nullptr) << i;
  }
  // Accepted in connect order, so all are open now that the last one is in
  // transmission (unless the setup outlasted the 2 s handshake timeout).
  const size_t rss = StatusBytes(pid(), "VmRSS");
  std::printf("[memory] %d idle connections: RSS %zu KiB (%zu bytes each)\n",
              2 * kEach, rss / 1024,
              rss > start_rss_ ? (rss - start_rss_) / (2 * kEach) : 0);
  Roundtrip(next_cookie_++);  // a new client is served meanwhile
  for (auto& c : negotiating) EXPECT_TRUE(c->WaitClosed());
  for (auto& c : ready) EXPECT_TRUE(c->Open());
}

// Connections opened and closed as fast as the client can.
TEST_F(ServeHostileTest, ConnectionChurn) {
  for (int i = 0; i < 2000; ++i) {
    auto c = Connect();
    ASSERT_NE(c, nullptr) << i;
    if (i % 3 == 1) c->Send(Bytes{0, 0, 0, 3});  // client flags, then gone
    if (i % 3 == 2) c->Greet();
  }
}

}  // namespace
}  // namespace nbd::test
