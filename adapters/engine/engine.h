// nbd::engine: one asynchronous NBD client over any adapter (blocking,
// epoll, io_uring), chosen at run time. N connections to one URI form an
// Export; commands are issued per connection and complete through
// callbacks.
//
//   auto engine = Engine::Create({.adapter = Adapter::kIoUring,
//                                 .timeout = absl::Seconds(10)});
//   auto exp = (*engine)->Open("nbd+unix:///?socket=/tmp/s", 4);
//   (*exp)->Read(conn, offset, buffer, [](const absl::Status& s) { ... });
//   RETURN_IF_ERROR((*engine)->Drain());
//   (*engine)->Shutdown();     // NBD_CMD_DISC, bounded wait for the close
//
// Calling contract:
//  - One thread. Nothing here is thread-safe; every call, callback and
//    observer runs on the caller's thread.
//  - Callbacks run exactly once per accepted command, and only from inside
//    Poll(), Drain(), RunUntil(), Disconnect() or Shutdown(): never from
//    inside the call that issued the command. So a callback may issue more
//    commands (they run on a later round, not recursively), and it may
//    query the Export, but must not call Poll(), Drain(), RunUntil(),
//    Disconnect() or Shutdown(), nor destroy the Engine.
//  - Destroying the Engine with commands in flight drops their callbacks
//    unrun (finish with Drain() and Shutdown() first).
//  - A command call that returns an error queued nothing; its callback never
//    runs. The event-loop adapters refuse what the core refuses (bad range,
//    unsupported, wrong phase); the blocking adapter refuses only once the
//    connection has ended and reports the core's other refusals through the
//    callback (it issues each command when its turn comes).
//  - Statuses carry an errno (nbd::StatusErrno): the server's error for a
//    failed command, ENOTCONN for commands cut off because the connection
//    ended (server gone, disconnect, timeout), ETIMEDOUT for waits that
//    exceeded their bound.
//  - Buffers given to Read/Write belong to the engine until the callback
//    ran (or the Engine is destroyed). Destroy the Engine before freeing
//    them: io_uring may hold a receive into a buffer until it reaped it.
//  - Export pointers live as long as the Engine.
//
// Adapters:
//   blocking  one BlockingClient per connection; commands queue per
//             connection and Poll() executes one per connection per round.
//   epoll     one EpollLoop; commands issued between polls are sent with
//             one Kick() per connection.
//   io_uring  one UringLoop (one ring) for every connection.
#ifndef NBD_ADAPTERS_ENGINE_ENGINE_H_
#define NBD_ADAPTERS_ENGINE_ENGINE_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "adapters/pump/pump.h"
#include "protocol/client/client.h"
#include "protocol/client/events.h"
#include "protocol/client/options.h"

namespace nbd::engine {

namespace internal {
class Driver;
class Link;
struct Completion;
struct Op;
}  // namespace internal

enum class Adapter { kBlocking, kEpoll, kIoUring };
// "blocking", "epoll", "io_uring" (also "uring"); nullopt otherwise.
std::optional<Adapter> ParseAdapter(std::string_view name);
const char* AdapterName(Adapter adapter);

// A command's completion: OK, the server's error with its errno, or
// ENOTCONN if the connection ended first. Move-only; a callable that fits
// in a few pointers is stored without allocating.
using Done = absl::AnyInvocable<void(const absl::Status&)>;
// Block status: the base:allocation extents, consecutive from `offset`
// (possibly covering less than asked for, never more).
using ExtentsDone = absl::AnyInvocable<void(
    const absl::Status&, uint64_t offset, const std::vector<Extent>& extents)>;

class Engine;

// One export over one or more connections (indices 0..connections()-1).
class Export {
 public:
  ~Export();
  Export(const Export&) = delete;
  Export& operator=(const Export&) = delete;

  // The URI given to Open(), or the name given to Attach().
  const std::string& uri() const { return uri_; }
  size_t connections() const { return links_.size(); }
  // A connection's core, for queries (export_size(), can_*(), phase(),
  // max_payload(), dead_reason(), ...). Issuing on it is not supported.
  const Client& client(size_t conn) const;
  // The first connection's core.
  const Client& info() const { return client(0); }
  uint64_t size() const { return info().export_size().value_or(0); }

  // Commands accepted on `conn` (or on all) whose callback has not run.
  size_t in_flight(size_t conn) const;
  size_t in_flight() const;
  // The connection's descriptor is released (closed or dead, nothing of it
  // left in the kernel).
  bool finished(size_t conn) const;

  // ---- Commands -------------------------------------------------------------
  // Each queues one command on `conn` (< connections()); see the contract
  // above. `flags` are NBD_CMD_FLAG_* as the core accepts them.
  absl::Status Read(size_t conn, uint64_t offset, absl::Span<uint8_t> buffer,
                    Done done, uint16_t flags = 0);
  absl::Status Write(size_t conn, uint64_t offset,
                     absl::Span<const uint8_t> data, uint16_t flags, Done done);
  absl::Status WriteZeroes(size_t conn, uint64_t offset, uint64_t length,
                           uint16_t flags, Done done);
  absl::Status Trim(size_t conn, uint64_t offset, uint64_t length,
                    uint16_t flags, Done done);
  absl::Status Cache(size_t conn, uint64_t offset, uint64_t length,
                     uint16_t flags, Done done);
  absl::Status Flush(size_t conn, Done done, uint16_t flags = 0);
  absl::Status BlockStatus(size_t conn, uint64_t offset, uint64_t length,
                           ExtentsDone done, uint16_t flags = 0);

  // ---- Option mode ----------------------------------------------------------
  // Only for a one-connection export opened with ClientOptions::option_mode
  // (phase kNegotiating). Each runs one option to its end, bounded by `timeout`
  // (DeadlineExceeded, ETIMEDOUT), and returns the server's answer
  // (OptionCompleted's status). They drive only this connection's I/O, and
  // run no command callbacks.
  absl::StatusOr<std::vector<std::string>> OptList(absl::Duration timeout);
  // Asks about export `name` (it becomes the export OptGo() selects).
  absl::Status OptInfo(std::string name, absl::Duration timeout);
  // Ends negotiation: ready for commands afterwards.
  absl::Status OptGo(absl::Duration timeout);
  absl::StatusOr<std::vector<MetaContext>> OptListMetaContext(
      std::vector<std::string> queries, absl::Duration timeout);
  // NBD_OPT_ABORT, then waits (bounded) for the connection to end.
  absl::Status OptAbort(absl::Duration timeout);

 private:
  friend class Engine;
  Export(Engine* engine, std::string uri);
  absl::Status Issue(size_t conn, internal::Op op);

  Engine* engine_;
  std::string uri_;
  std::vector<std::unique_ptr<internal::Link>> links_;
  // A wait for this server timed out: Shutdown() does not wait for it, and
  // the blocking adapter stops sending it more.
  bool stalled_ = false;
};

// Sees every event of every connection, in order, before the engine acts
// on it (for logging). Runs inside the engine's calls; must not call them.
using EventObserver = std::function<void(const Export& exp, size_t conn,
                                         const ClientEvent& event)>;

struct EngineOptions {
  Adapter adapter = Adapter::kIoUring;
  // Bounds connecting, the handshake, each wait for the server to answer
  // (Poll fails with ETIMEDOUT after this long without a completion) and
  // the wait for the servers to close in Shutdown()/Disconnect().
  absl::Duration timeout = absl::Seconds(30);
  // Diagnostics (e.g. a tool's --debug), one line per call, without a
  // newline: notes (io_uring unavailable, multi-conn not offered, a command
  // failed) and, as "URI [conn]: message", every ClientTrace line (setting
  // `debug` turns ClientOptions::trace on). Null: none.
  std::function<void(std::string_view line)> debug = nullptr;
  // ClientOptions::recv_readahead for every connection, unless the
  // ClientOptions given to Open() set one.
  size_t recv_readahead = 0;
  EventObserver observer = nullptr;  // may be null
  // Receives the adapters' system call counts if set (it must outlive the
  // Engine; several engines may share one); otherwise the Engine keeps its
  // own. counters() reads whichever is used.
  adapters::SyscallCounters* counters = nullptr;
};

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

  // Connects `connections` times to `uri` (adapters/connect) and runs each
  // handshake (or parks in option mode if `options.option_mode`; then only
  // one connection is opened). If the server does not advertise
  // multi-conn, only one connection is opened (debug note), as nbdcopy
  // does. `options.export_name` defaults to the URI's. Errors name the URI.
  absl::StatusOr<Export*> Open(std::string_view uri, size_t connections,
                               ClientOptions options = {});
  // One connection over `fd`, a connected stream socket (owned from now
  // on; closed on failure too), e.g. from adapters::ConnectUnix or a
  // socketpair; it is validated and made non-blocking (adapters::AdoptFd).
  // `name` stands for the URI in messages.
  absl::StatusOr<Export*> Attach(int fd, ClientOptions options,
                                 std::string name = "fd");

  // Sends what was issued, waits until at least one command completes
  // (blocking: executes one queued command per connection) and runs the
  // callbacks of every completed command. Returns at once if nothing is in
  // flight. DeadlineExceeded (ETIMEDOUT) if nothing completed for
  // `options.timeout`; the commands stay in flight, the message names the
  // oldest of them ("URI: write at offset 0: no reply from the server for
  // 2s") and its export is marked stalled.
  //
  // Blocking: the round shares one deadline (`options.timeout` after the
  // last reply), so N stalled connections cost one timeout, not N. The
  // command that timed out completes with ETIMEDOUT and its connection is
  // given up; the next Poll fails what is queued for that server with
  // ENOTCONN without waiting.
  absl::Status Poll();
  // Polls until nothing is in flight.
  absl::Status Drain();
  // Drives the connections (and runs callbacks) until `done()` (checked
  // before every wait), at most `timeout` (DeadlineExceeded, ETIMEDOUT;
  // commands stay in flight). Unlike Poll() it also waits with nothing in
  // flight, e.g. to see an idle connection's server go away; the blocking
  // adapter cannot (it reads only inside calls), so there it returns
  // FailedPrecondition when nothing is queued and `done()` is false.
  absl::Status RunUntil(absl::FunctionRef<bool()> done, absl::Duration timeout);
  size_t in_flight() const;

  // libnbd's nbd_shutdown for every connection: Client::Shutdown(flags)
  // (NBD_CMD_DISC once the commands in flight are answered; with
  // kShutdownAbandonPending unsent ones fail with ENOTCONN first; in option
  // mode NBD_OPT_ABORT), then waits for the servers to close, at most
  // `timeout` in total (one deadline for every connection, also with the
  // blocking adapter). An export that already stalled gets no wait at
  // all. A server that does not close has its connection given up
  // (ETIMEDOUT; pending callbacks run with ENOTCONN). Runs every callback
  // still due. Returns OK if every connection closed cleanly, else the
  // first problem (callers that finished their work may treat that as a
  // warning).
  absl::Status Shutdown(uint32_t flags, absl::Duration timeout);
  absl::Status Shutdown() { return Shutdown(0, options_.timeout); }
  // The same with Client::Disconnect(): NBD_CMD_DISC goes out right behind
  // the commands already queued instead of after their replies (a server
  // may answer those with ESHUTDOWN). The blocking adapter executes what is
  // queued first, then shuts down.
  absl::Status Disconnect(absl::Duration timeout);

  // System calls made by the adapters so far (all connections).
  const adapters::SyscallCounters& counters() const { return *counters_; }

 private:
  friend class Export;
  explicit Engine(EngineOptions options);
  absl::Status Connect(Export& exp, int fd, ClientOptions options);
  // Keeps a failed Export (see abandoned_) and returns `why`.
  absl::Status Abandon(std::unique_ptr<Export> exp, absl::Status why);
  absl::Status End(bool disconnect, uint32_t flags, absl::Duration timeout);
  size_t Dispatch();
  absl::Status NoReply() const;
  absl::Status HandshakeFailed(const absl::Status& s) const;
  absl::Status TimedOut();
  void Note(std::string_view line) const;

  EngineOptions options_;
  adapters::SyscallCounters own_counters_;
  adapters::SyscallCounters* counters_;  // options_.counters or own_counters_
  std::unique_ptr<internal::Driver> driver_;
  std::vector<std::unique_ptr<Export>> exports_;
  // Exports whose Open()/Attach() failed; their links may still be known
  // to the driver's loop, so they live as long as the driver.
  std::vector<std::unique_ptr<Export>> abandoned_;
  // Completed commands whose callbacks have not run yet, and the batch
  // being dispatched (two vectors swapped so neither reallocates).
  std::vector<internal::Completion> completed_;
  std::vector<internal::Completion> dispatching_;
  // Accepted commands whose callback has not run yet.
  size_t outstanding_ = 0;
  absl::Time last_progress_;
  uint64_t next_seq_ = 0;  // issue order, to find the oldest command
};

}  // namespace nbd::engine

#endif  // NBD_ADAPTERS_ENGINE_ENGINE_H_
