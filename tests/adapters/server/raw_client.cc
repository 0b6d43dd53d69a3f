#include "tests/adapters/server/raw_client.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "protocol/endian.h"

namespace nbd::test {
namespace {

int RemainingMs(absl::Time deadline) {
  const absl::Duration left = deadline - absl::Now();
  if (left <= absl::ZeroDuration()) return 0;
  return static_cast<int>(absl::ToInt64Milliseconds(left)) + 1;
}

// Waits for `events` on `fd` until `deadline`; false on timeout.
bool WaitFor(int fd, short events, absl::Time deadline) {  // NOLINT
  while (true) {
    pollfd p{fd, events, 0};
    const int ms = RemainingMs(deadline);
    const int n = ::poll(&p, 1, ms);
    if (n > 0) return true;
    if (n == 0) return false;
    if (errno != EINTR) return false;
  }
}

}  // namespace

Bytes RawRequest(bool extended, Command command, uint64_t cookie,
                 uint64_t offset, uint64_t length, uint16_t flags) {
  const uint16_t type = static_cast<uint16_t>(command);
  if (extended) {
    auto a = EncodeExtendedRequest({flags, type, cookie, offset, length});
    return Bytes(a.begin(), a.end());
  }
  auto a = EncodeRequest(
      {flags, type, cookie, offset, static_cast<uint32_t>(length)});
  return Bytes(a.begin(), a.end());
}

Bytes RawOption(uint32_t option, ByteSpan data) {
  auto h =
      EncodeOptionRequestHeader({option, static_cast<uint32_t>(data.size())});
  Bytes out(h.begin(), h.end());
  out.insert(out.end(), data.begin(), data.end());
  return out;
}

std::unique_ptr<RawClient> RawClient::ConnectUnix(const std::string& path) {
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return nullptr;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    ::close(fd);
    return nullptr;
  }
  // Non-blocking: every wait is a bounded poll.
  ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
  return std::unique_ptr<RawClient>(new RawClient(fd));
}

RawClient::~RawClient() { ::close(fd_); }

bool RawClient::Send(ByteSpan bytes, absl::Duration limit) {
  const absl::Time deadline = absl::Now() + limit;
  size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n =
        ::send(fd_, bytes.data() + done, bytes.size() - done, MSG_NOSIGNAL);
    if (n > 0) {
      done += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      if (!WaitFor(fd_, POLLOUT, deadline)) return false;
      continue;
    }
    return false;  // EPIPE, ECONNRESET: the server closed
  }
  return true;
}

size_t RawClient::SendSome(ByteSpan bytes) {
  size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n =
        ::send(fd_, bytes.data() + done, bytes.size() - done, MSG_NOSIGNAL);
    if (n > 0) {
      done += static_cast<size_t>(n);
    } else if (n < 0 && errno == EINTR) {
      continue;
    } else {
      break;
    }
  }
  return done;
}

std::optional<Bytes> RawClient::Recv(size_t n, absl::Duration limit) {
  const absl::Time deadline = absl::Now() + limit;
  Bytes out(n);
  size_t got = 0;
  while (got < n) {
    const ssize_t r = ::recv(fd_, out.data() + got, n - got, 0);
    if (r > 0) {
      got += static_cast<size_t>(r);
      continue;
    }
    if (r == 0) return std::nullopt;  // EOF
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      if (!WaitFor(fd_, POLLIN, deadline)) return std::nullopt;
      continue;
    }
    return std::nullopt;
  }
  return out;
}

bool RawClient::WaitClosed(absl::Duration limit) {
  const absl::Time deadline = absl::Now() + limit;
  char buf[65536];
  while (true) {
    const ssize_t r = ::recv(fd_, buf, sizeof(buf), 0);
    if (r == 0) return true;
    if (r > 0) continue;
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      if (!WaitFor(fd_, POLLIN, deadline)) return false;
      continue;
    }
    return true;  // ECONNRESET and the like: closed too
  }
}

bool RawClient::Open() {
  char buf[65536];
  while (true) {
    const ssize_t r = ::recv(fd_, buf, sizeof(buf), 0);
    if (r > 0) continue;
    if (r == 0) return false;
    if (errno == EINTR) continue;
    return errno == EAGAIN || errno == EWOULDBLOCK;
  }
}

bool RawClient::Greet() {
  std::optional<Bytes> g = Recv(kNewstyleGreetingSize);
  if (!g.has_value() || !DecodeNewstyleGreeting(*g).ok()) return false;
  auto flags =
      EncodeClientFlags(kClientFlagFixedNewstyle | kClientFlagNoZeroes);
  return Send(flags);
}

std::optional<std::pair<OptionReplyHeader, Bytes>> RawClient::ReadOptionReply(
    absl::Duration limit) {
  std::optional<Bytes> h = Recv(kOptionReplyHeaderSize, limit);
  if (!h.has_value()) return std::nullopt;
  absl::StatusOr<OptionReplyHeader> header = DecodeOptionReplyHeader(*h);
  if (!header.ok()) return std::nullopt;
  std::optional<Bytes> data = Recv(header->length, limit);
  if (!data.has_value()) return std::nullopt;
  return std::make_pair(*header, std::move(*data));
}

bool RawClient::Handshake(bool extended, const std::string& export_name) {
  if (!Greet()) return false;
  const Option first =
      extended ? Option::kExtendedHeaders : Option::kStructuredReply;
  if (!Send(RawOption(static_cast<uint32_t>(first)))) return false;
  auto ack = ReadOptionReply();
  if (!ack.has_value() ||
      ack->first.type != static_cast<uint32_t>(OptionReplyType::kAck)) {
    return false;
  }
  extended_ = extended;
  Bytes go = EncodeInfoRequest({export_name, {}});
  if (!Send(RawOption(static_cast<uint32_t>(Option::kGo), go))) return false;
  while (true) {
    auto r = ReadOptionReply();
    if (!r.has_value()) return false;
    if (r->first.type == static_cast<uint32_t>(OptionReplyType::kAck)) {
      return true;
    }
    if (IsOptionReplyError(r->first.type)) return false;
  }
}

std::optional<RawReply> RawClient::ReadReply(absl::Duration limit) {
  RawReply out;
  if (extended_) {
    std::optional<Bytes> h = Recv(kExtendedReplyHeaderSize, limit);
    if (!h.has_value()) return std::nullopt;
    absl::StatusOr<ExtendedReplyHeader> header = DecodeExtendedReplyHeader(*h);
    if (!header.ok() || header->length > (64u << 20)) return std::nullopt;
    out.magic = kExtendedReplyMagic;
    out.cookie = header->cookie;
    out.flags = header->flags;
    out.type = header->type;
    std::optional<Bytes> p = Recv(static_cast<size_t>(header->length), limit);
    if (!p.has_value()) return std::nullopt;
    out.payload = std::move(*p);
  } else {
    std::optional<Bytes> m = Recv(4, limit);
    if (!m.has_value()) return std::nullopt;
    out.magic = LoadBe32(m->data());
    if (out.magic == kSimpleReplyMagic) {
      std::optional<Bytes> rest = Recv(kSimpleReplySize - 4, limit);
      if (!rest.has_value()) return std::nullopt;
      out.error = LoadBe32(rest->data());
      out.cookie = LoadBe64(rest->data() + 4);
      return out;
    }
    std::optional<Bytes> rest = Recv(kStructuredReplyHeaderSize - 4, limit);
    if (!rest.has_value()) return std::nullopt;
    Bytes all = *m;
    all.insert(all.end(), rest->begin(), rest->end());
    absl::StatusOr<StructuredReplyHeader> header =
        DecodeStructuredReplyHeader(all);
    if (!header.ok()) return std::nullopt;
    out.cookie = header->cookie;
    out.flags = header->flags;
    out.type = header->type;
    std::optional<Bytes> p = Recv(header->length, limit);
    if (!p.has_value()) return std::nullopt;
    out.payload = std::move(*p);
  }
  if ((out.type & kChunkTypeErrorBit) && out.payload.size() >= 4) {
    out.error = LoadBe32(out.payload.data());
  }
  return out;
}

}  // namespace nbd::test
