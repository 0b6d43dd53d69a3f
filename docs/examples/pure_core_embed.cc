// nbd::Client over a byte stream of the program's own, through the core's
// byte API only (Feed or RecvBuffer/CommitRecv in, PeekOutput/ConsumeOutput
// out, events), with no adapter: what an embedder with a TLS library, a VM
// channel or shared memory writes. Here the stream is a blocking socket
// used with plain read() and write(). The task (write, read back and
// compare, disconnect, closed) runs twice: with copying input (Feed) and
// with zero-copy input (RecvBuffer/CommitRecv).
// Usage: pure_core_embed NBD-URI (e.g. 'nbd+unix:///?socket=/tmp/s').
#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <variant>
#include <vector>

#include "adapters/connect/connect.h"
#include "protocol/client/client.h"
#include "protocol/status.h"

namespace {

// [START stream]
// The program's own byte stream: SSL_read/SSL_write, a virtio channel or a
// shared-memory ring would go here instead.
struct Stream {
  int fd;
  ssize_t Read(uint8_t* p, size_t n) { return read(fd, p, n); }
  ssize_t Write(const uint8_t* p, size_t n) { return write(fd, p, n); }
  void CloseWrite() { shutdown(fd, SHUT_WR); }  // with TLS: close_notify
};
// [END stream]

// [START output]
// Writes everything the core has queued, one slice at a time.
void Output(nbd::Client& client, Stream& s) {
  while (client.pending_output_bytes() > 0) {
    nbd::IoSlice slice;
    client.PeekOutput(absl::MakeSpan(&slice, 1));
    ssize_t n = s.Write(slice.data, slice.size);
    if (n < 0) {
      return client.FeedTransportError(nbd::ErrnoStatus(errno, "write"));
    }
    client.ConsumeOutput(n).IgnoreError();  // n <= pending: cannot fail
  }
}
// [END output]

// [START input]
// One read from the stream into the core.
void Input(nbd::Client& client, Stream& s, bool zero_copy) {
  ssize_t n;
  if (zero_copy) {
    // The exact span the next bytes belong in: a READ's payload lands in
    // the caller's buffer.
    absl::Span<uint8_t> into = client.RecvBuffer();
    n = s.Read(into.data(), into.size());
    if (n > 0) return client.CommitRecv(n).IgnoreError();
  } else {
    uint8_t buf[65536];
    n = s.Read(buf, sizeof buf);
    // A failure here is also a ClientDead event.
    if (n > 0) return client.Feed(absl::MakeConstSpan(buf, n)).IgnoreError();
  }
  if (n == 0) return client.FeedEof();          // the server closed
  int e = errno == EAGAIN ? ETIMEDOUT : errno;  // SO_RCVTIMEO expired
  client.FeedTransportError(nbd::ErrnoStatus(e, "read"));
}
// [END input]

// [START run]
// Drives the core until `until()` holds or the connection has ended.
// `ok` turns false on a failed command or a dead connection.
template <typename Until>
void Run(nbd::Client& client, Stream& s, bool zero_copy, bool& ok,
         Until until) {
  for (;;) {
    Output(client, s);
    while (auto e = client.PollEvent()) {
      if (std::holds_alternative<nbd::ShutdownWrite>(*e)) s.CloseWrite();
      if (auto* c = std::get_if<nbd::CommandCompleted>(&*e)) {
        ok = ok && c->status.ok();
      } else if (auto* d = std::get_if<nbd::ClientDead>(&*e)) {
        std::fprintf(stderr, "dead: %s\n", d->reason.ToString().c_str());
        ok = false;
      }
    }
    nbd::ClientPhase p = client.phase();
    if (until() || p == nbd::ClientPhase::kClosed ||
        p == nbd::ClientPhase::kDead) {
      return;
    }
    Input(client, s, zero_copy);
  }
}
// [END run]

bool Task(const char* uri, bool zero_copy) {
  auto conn = nbd::adapters::ConnectUri(uri);
  if (!conn.ok()) {
    std::fprintf(stderr, "%s\n", conn.status().ToString().c_str());
    return false;
  }
  // [START setup]
  // Blocking, with a bound on every read and write.
  fcntl(conn->fd, F_SETFL, fcntl(conn->fd, F_GETFL) & ~O_NONBLOCK);
  timeval bound = {10, 0};
  setsockopt(conn->fd, SOL_SOCKET, SO_RCVTIMEO, &bound, sizeof bound);
  setsockopt(conn->fd, SOL_SOCKET, SO_SNDTIMEO, &bound, sizeof bound);
  Stream s{conn->fd};
  nbd::ClientOptions options;
  options.export_name = conn->export_name;
  nbd::Client client(options);
  // [END setup]

  // [START task]
  bool ok = true;
  auto idle = [&] { return client.phase() == nbd::ClientPhase::kReady; };
  Run(client, s, zero_copy, ok, idle);  // the handshake
  std::vector<uint8_t> data(65536, 0x5a), back(65536);
  ok = ok && client.Write(0, data).ok();
  Run(client, s, zero_copy, ok, idle);
  ok = ok && client.Read(0, absl::MakeSpan(back)).ok();
  Run(client, s, zero_copy, ok, idle);
  ok = ok && client.Disconnect().ok();
  Run(client, s, zero_copy, ok, [] { return false; });  // to the end
  close(conn->fd);
  return ok && client.phase() == nbd::ClientPhase::kClosed && back == data;
  // [END task]
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) return 2;
  signal(SIGPIPE, SIG_IGN);  // write() to a closed socket: EPIPE, no signal
  bool copying = Task(argv[1], false);
  bool zero_copy = Task(argv[1], true);
  std::printf("copying: %s, zero-copy: %s\n", copying ? "ok" : "FAILED",
              zero_copy ? "ok" : "FAILED");
  return copying && zero_copy ? 0 : 1;
}
