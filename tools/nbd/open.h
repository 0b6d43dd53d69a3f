// Opening NBD exports for the `nbd` tool's data-moving subcommands (copy,
// bench, demo): N connections to one URI, driven by one of the adapters,
// with an asynchronous command interface on top.
//
//   auto engine = Engine::Create({.adapter = Adapter::kIoUring,
//                                 .timeout = g.timeout, .debug = g.debug});
//   auto exp = (*engine)->Open("nbd+unix:///?socket=/tmp/s", 4, {});
//   (*exp)->Read(conn, offset, buffer, [](const absl::Status& s) { ... });
//   while ((*engine)->in_flight() > 0) RETURN_IF_ERROR((*engine)->Poll());
//   (*engine)->Shutdown();
//
// The protocol core never calls user code; this layer does. Completion
// callbacks run only from inside Engine::Poll()/Drain(), never from inside
// the call that issued the command, so a callback may issue more commands
// (that is how copy and bench keep their queues full).
//
// Adapters:
//   blocking  one BlockingClient per connection; commands are queued and
//             executed one at a time per connection by Poll().
//   epoll     one EpollLoop, one EpollConnection per connection; commands
//             issued between polls are sent with one Kick() per connection.
//   io_uring  one UringLoop (one ring) for every connection of every export.
//
// Buffers passed to Read/Write must stay valid until their callback ran or
// the Engine is destroyed (destroy the Engine first: io_uring may still
// hold a receive into a buffer until the driver has reaped it).
#ifndef NBD_TOOLS_NBD_OPEN_H_
#define NBD_TOOLS_NBD_OPEN_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "adapters/pump/pump.h"
#include "protocol/client/client.h"
#include "protocol/client/options.h"

namespace nbd::adapters {
class BlockingClient;
class EpollConnection;
class EpollLoop;
class UringConnection;
class UringLoop;
}  // namespace nbd::adapters

namespace nbd::tool {

enum class Adapter { kBlocking, kEpoll, kIoUring };
// "blocking", "epoll", "io_uring" (also "uring"); nullopt otherwise.
std::optional<Adapter> ParseAdapter(std::string_view name);
const char* AdapterName(Adapter adapter);

// `status` with its message prefixed by "NAME: WHAT: ", or only by
// "WHAT: " if the message already starts with NAME (connect errors from
// adapters/connect name the URI themselves).
absl::Status Named(std::string_view name, std::string_view what,
                   const absl::Status& status);

// Runs with the command's status (OK, the server's error with its errno, or
// ENOTCONN if the connection ended first).
using Done = std::function<void(const absl::Status&)>;
// Block status: the base:allocation extents, consecutive from `offset`
// (possibly covering less than asked for, never more).
using ExtentsDone = std::function<void(const absl::Status&, uint64_t offset,
                                       const std::vector<Extent>& extents)>;

class Engine;

// One export over one or more connections.
class Export {
 public:
  ~Export();
  Export(const Export&) = delete;
  Export& operator=(const Export&) = delete;

  const std::string& uri() const { return uri_; }
  size_t connections() const { return conns_.size(); }
  // The first connection's core, for queries: export_size(), can_*(),
  // max_payload(), block_size(), ...
  const Client& info() const;
  uint64_t size() const { return info().export_size().value_or(0); }

  // Commands accepted on `conn` whose callback has not run yet.
  size_t in_flight(size_t conn) const;
  size_t in_flight() const;

  // Each queues one command on connection `conn` (< connections()). On
  // success `done` runs exactly once, later, from Engine::Poll(). On error
  // (the core refused it: bad range, unsupported, connection gone) nothing
  // was queued and `done` never runs.
  absl::Status Read(size_t conn, uint64_t offset, absl::Span<uint8_t> buffer,
                    Done done);
  absl::Status Write(size_t conn, uint64_t offset,
                     absl::Span<const uint8_t> data, uint16_t flags, Done done);
  absl::Status WriteZeroes(size_t conn, uint64_t offset, uint64_t length,
                           uint16_t flags, Done done);
  absl::Status Trim(size_t conn, uint64_t offset, uint64_t length,
                    uint16_t flags, Done done);
  absl::Status Flush(size_t conn, Done done);
  absl::Status BlockStatus(size_t conn, uint64_t offset, uint64_t length,
                           ExtentsDone done);

 private:
  friend class Engine;
  struct Op;
  struct Conn;
  Export(Engine* engine, std::string uri);
  absl::Status Issue(size_t conn, Op op);

  Engine* engine_;
  std::string uri_;
  std::vector<std::unique_ptr<Conn>> conns_;
  // A wait for this server timed out: Shutdown() does not wait for it.
  bool stalled_ = false;
};

struct EngineOptions {
  Adapter adapter = Adapter::kIoUring;
  // Bounds connecting, the handshake, each wait for the server to answer
  // (Poll fails with ETIMEDOUT after this long without a completion) and
  // the wait for the server to close after Shutdown().
  absl::Duration timeout = absl::Seconds(30);
  bool debug = false;  // notes and a line per command on stderr
  // ClientOptions::recv_readahead for every connection (unless the
  // ClientOptions given to Open() set one). See ReadaheadFor().
  size_t recv_readahead = 0;
};

// The read-ahead that suits requests of `request_size` bytes. Small requests
// are bound by receive calls (a structured reply is 3-4 dependent receives
// without read-ahead), so they read ahead 64 KiB and pay a copy of their
// small payload; large requests read exactly each header so their payload
// lands in the caller's buffer without a copy.
size_t ReadaheadFor(uint64_t request_size);

class Engine {
 public:
  // io_uring falls back to epoll (with a debug note) if no ring can be set
  // up, e.g. under a seccomp policy that forbids io_uring_setup.
  static absl::StatusOr<std::unique_ptr<Engine>> Create(EngineOptions options);
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  Adapter adapter() const { return options_.adapter; }  // the one in use
  const EngineOptions& options() const { return options_; }

  // Connects `connections` times to `uri` and runs each handshake. If the
  // server does not advertise multi-conn, only one connection is opened
  // (debug note), as nbdcopy does: writes through several connections are
  // only coherent with multi-conn. `options.export_name` defaults to the
  // URI's. Errors name the URI. The Export lives as long as the Engine.
  absl::StatusOr<Export*> Open(std::string_view uri, size_t connections,
                               ClientOptions options = {});

  // Sends what was issued, waits until at least one command completes
  // (blocking: executes one queued command per connection) and runs the
  // callbacks of every completed command. Returns at once if nothing is in
  // flight. DeadlineExceeded (ETIMEDOUT) if nothing completed for
  // `options.timeout`; the commands stay in flight and the message names
  // the oldest of them, e.g. "URI: write at offset 0: no reply from the
  // server for 2s".
  //
  // Blocking: the round shares one deadline (`options.timeout` after the
  // last reply), so N stalled connections cost one timeout, not N. The
  // command that timed out completes with ETIMEDOUT ("no reply from the
  // server for 2s"); the rest of the round stays queued, and the next Poll
  // fails what is queued for that server with ENOTCONN without waiting.
  absl::Status Poll();
  // Polls until nothing is in flight.
  absl::Status Drain();
  size_t in_flight() const;

  // Ends every connection: NBD_CMD_DISC after the commands in flight, then
  // waits for the servers to close, at most `options.timeout` in total
  // (one deadline for every connection, also with the blocking adapter).
  // An export that already timed out gets no wait at all. A server that
  // does not close has its socket closed (and pending callbacks run with
  // ENOTCONN). Returns OK if every connection closed cleanly, else the
  // first problem (callers that finished their work treat that as a
  // warning).
  absl::Status Shutdown();

  // System calls made by the adapters so far (all connections).
  const adapters::SyscallCounters& counters() const { return counters_; }

 private:
  friend class Export;
  explicit Engine(EngineOptions options);
  absl::Status OpenOne(Export& exp, std::string_view uri,
                       const ClientOptions& options);
  absl::Status RunUntil(const std::function<bool()>& done,
                        absl::Duration timeout);
  // --debug: prints the core's ClientTrace events, naming the export and connection.
  void TraceEvent(const Export::Conn& conn, const ClientEvent& event);
  void OnEvent(Export::Conn& conn, ClientEvent& event);
  void KickDirty();
  size_t Dispatch();
  void RunBlocking();
  // ETIMEDOUT "no reply from the server for <timeout>".
  absl::Status NoReply() const;
  // `s` from a handshake; a timeout becomes "handshake: " + NoReply().
  absl::Status HandshakeFailed(const absl::Status& s) const;
  // Poll's timeout: NoReply() naming the oldest command in flight and its
  // server (which is marked stalled).
  absl::Status TimedOut();

  EngineOptions options_;
  adapters::SyscallCounters counters_;
  std::unique_ptr<adapters::EpollLoop> epoll_;
  std::unique_ptr<adapters::UringLoop> uring_;
  std::vector<std::unique_ptr<Export>> exports_;
  // Completed commands whose callbacks have not run yet.
  struct Completion;
  std::vector<Completion> completed_;
  absl::Time last_progress_;
  uint64_t next_seq_ = 0;  // issue order, to find the oldest command
};

}  // namespace nbd::tool

#endif  // NBD_TOOLS_NBD_OPEN_H_
