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
//  - The loop thread. The Engine, its Exports and the Clients they show
//    belong to one thread at a time: the one that calls Poll(), Drain(),
//    RunUntil(), Shutdown() and the Export's calls (it may change, if the
//    caller orders the hand-over, e.g. with a mutex or a thread join).
//    Nothing on them is thread-safe; other threads use the handles below.
//  - Callbacks (Done, ExtentsDone, EngineOptions::on_complete/on_extents)
//    run exactly once per accepted command, on the loop thread, and only
//    from inside Poll(), Drain(), RunUntil(), Disconnect() or Shutdown()
//    (and the destructor, for commands other threads queued; see
//    "Threads"): never from inside the call that issued the command. So a
//    callback may issue more commands (they run on a later round, not
//    recursively), and it may query the Export, but must not call Poll(),
//    Drain(), RunUntil(), Disconnect() or Shutdown(), nor destroy the Engine.
//  - Destroying the Engine with commands in flight (issued, not yet
//    completed) drops their callbacks unrun (finish with Drain() and
//    Shutdown() first).
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
// Tags: instead of a Done closure, a command may carry a Tag (a caller's
// uint64_t, like libnbd's user_data); it then completes through the one
// engine-wide EngineOptions::on_complete(export, conn, tag, status), and a
// tagged BlockStatus delivers its extents through on_extents right before.
//
// Threads: other threads submit through two copyable, thread-safe handles
// that the loop thread hands out, Submitter (Engine::submitter(): Post a
// task) and ThreadSafeExport (Export::thread_safe(): the Export's commands,
// with a Done or a Tag, plus Post):
//
//   ThreadSafeExport ts = exp->thread_safe();        // loop thread
//   std::thread worker([ts, &buf] {                  // any thread
//     ts.Read(0, 0, absl::MakeSpan(buf), [](const absl::Status& s) {
//       /* runs on the loop thread */ }).IgnoreError();
//   });
//   engine->RunUntil([&] { return done; }, timeout); // loop thread
//
//  - A handle call queues the work (a mutex-protected queue) and wakes the
//    loop thread if it waits: epoll and io_uring wait on an eventfd too,
//    so a Poll()/RunUntil() blocked in epoll_wait or the ring wakes up.
//  - Queued work runs on the loop thread, in the order it was queued, at
//    the engine's next round: on entering Poll(), Drain() or RunUntil(),
//    after each wait inside them, and at the start of Shutdown() and
//    Disconnect(). A queued command is then issued as if the loop thread
//    had called the Export; a refusal there (bad range, unsupported, wrong
//    phase, connection ended) completes it through its callback with that
//    error, since its submit call already returned OK. Every accepted
//    command completes exactly once; the Engine's in_flight() counts it
//    from the round that issued it.
//  - Buffers: a buffer given to a ThreadSafeExport command belongs to the
//    engine from the submit call until its callback ran on the loop
//    thread. Data written into a Write's buffer before the call is what is
//    sent (the queue orders it); a Read's data is the submitter's once the
//    callback handed it back (e.g. through a mutex, a std::promise or an
//    atomic flag the callback sets).
//  - Shutdown() and Disconnect() close the queue first (unless every
//    connection refuses the request: then they change nothing): from then
//    on every handle call returns FailedPrecondition (ESHUTDOWN) and
//    queues nothing, and what was queued before is issued, so it completes
//    inside that call like any command in flight (the blocking adapter
//    fails commands still waiting for their turn with ENOTCONN, as it does
//    for commands issued on the loop thread).
//  - Destroying the Engine closes the queue too (handles outlive it and
//    are refused); commands still queued complete with Cancelled
//    (ECANCELED) on the destroying thread, in the destructor, before
//    anything is torn down; tasks still queued are destroyed unrun. Call
//    Shutdown() first to have everything accepted run.
//  - The blocking adapter cannot be woken while it waits for a reply: work
//    queued meanwhile runs when that round ends (one command per
//    connection). Once a handle was handed out, RunUntil() with nothing
//    queued waits for posts (at most its timeout) instead of failing.
//  - Cost: a loop thread that no one posts to pays one atomic load per
//    round; no lock, no atomic read-modify-write, no system call. Loop
//    thread calls on the Export take no lock either.
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
#include <utility>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "adapters/connect/uri.h"
#include "adapters/pump/pump.h"
#include "protocol/client/client.h"
#include "protocol/client/events.h"
#include "protocol/client/options.h"

namespace nbd::engine {

namespace internal {
class Driver;
class Link;
class SubmitQueue;
struct Completion;
struct Op;
struct Submission;
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

// A caller's value carried by a command issued with it instead of a Done:
// the command completes through EngineOptions::on_complete with this
// value (and, for BlockStatus, on_extents first). The engine never
// interprets it; values need not be unique.
struct Tag {
  uint64_t value = 0;
};

class Engine;
class Export;

// A thread-safe handle for posting work to an Engine's loop thread
// (Engine::submitter()). Copyable; any number of threads may use copies
// or the same one concurrently, also after the Engine is destroyed (then
// every call is refused).
class Submitter {
 public:
  // Refers to no engine: every call is refused (ESHUTDOWN).
  Submitter() = default;

  // Queues `task` to run once on the loop thread at the engine's next
  // round (see "Threads" above) and wakes the loop thread. A task runs
  // where callbacks run, under their rules: it may issue commands on any
  // Export, must not call Poll(), Drain(), RunUntil(), Disconnect(),
  // Shutdown() nor destroy the Engine. FailedPrecondition (ESHUTDOWN) once
  // the engine's Shutdown()/Disconnect() began or it is gone; `task` is
  // then destroyed here, unrun; InvalidArgument (EINVAL) for an empty
  // `task`. Queued tasks still unrun when the Engine is destroyed are
  // destroyed unrun.
  absl::Status Post(absl::AnyInvocable<void()> task) const;

 protected:
  friend class Engine;
  explicit Submitter(std::shared_ptr<internal::SubmitQueue> queue)
      : queue_(std::move(queue)) {}
  std::shared_ptr<internal::SubmitQueue> queue_;
};

// An Export's commands for any thread (Export::thread_safe()). The calls
// mirror Export's and mean the same; they differ in what they check at
// once: OK means queued (the callback, or on_complete for a Tag, then runs
// exactly once on the loop thread). Errors, with nothing queued and the
// callback never run: InvalidArgument (EINVAL) for `conn` >= connections()
// or a Tag without EngineOptions::on_complete; FailedPrecondition
// (ESHUTDOWN) once the engine's Shutdown()/Disconnect() began or it is
// gone. Everything else the loop thread's call would refuse arrives as the
// callback's status. Buffer rules: see "Threads" above.
class ThreadSafeExport : public Submitter {
 public:
  // Refers to no export: every call is refused (ESHUTDOWN).
  ThreadSafeExport() = default;

  // The export's connections when the handle was made (fixed once Open()
  // or Attach() returned).
  size_t connections() const { return connections_; }

  absl::Status Read(size_t conn, uint64_t offset, absl::Span<uint8_t> buffer,
                    Done done, uint16_t flags = 0) const;
  absl::Status Read(size_t conn, uint64_t offset, absl::Span<uint8_t> buffer,
                    Tag tag, uint16_t flags = 0) const;
  absl::Status Write(size_t conn, uint64_t offset,
                     absl::Span<const uint8_t> data, uint16_t flags,
                     Done done) const;
  absl::Status Write(size_t conn, uint64_t offset,
                     absl::Span<const uint8_t> data, uint16_t flags,
                     Tag tag) const;
  absl::Status WriteZeroes(size_t conn, uint64_t offset, uint64_t length,
                           uint16_t flags, Done done) const;
  absl::Status WriteZeroes(size_t conn, uint64_t offset, uint64_t length,
                           uint16_t flags, Tag tag) const;
  absl::Status Trim(size_t conn, uint64_t offset, uint64_t length,
                    uint16_t flags, Done done) const;
  absl::Status Trim(size_t conn, uint64_t offset, uint64_t length,
                    uint16_t flags, Tag tag) const;
  absl::Status Cache(size_t conn, uint64_t offset, uint64_t length,
                     uint16_t flags, Done done) const;
  absl::Status Cache(size_t conn, uint64_t offset, uint64_t length,
                     uint16_t flags, Tag tag) const;
  absl::Status Flush(size_t conn, Done done, uint16_t flags = 0) const;
  absl::Status Flush(size_t conn, Tag tag, uint16_t flags = 0) const;
  absl::Status BlockStatus(size_t conn, uint64_t offset, uint64_t length,
                           ExtentsDone done, uint16_t flags = 0) const;
  absl::Status BlockStatus(size_t conn, uint64_t offset, uint64_t length,
                           Tag tag, uint16_t flags = 0) const;

 private:
  friend class Export;
  ThreadSafeExport(std::shared_ptr<internal::SubmitQueue> queue, Export* exp,
                   size_t connections, bool tags)
      : Submitter(std::move(queue)),
        exp_(exp),
        connections_(connections),
        tags_(tags) {}
  // Checks what can be checked here and queues `op` for `conn`.
  absl::Status Submit(size_t conn, internal::Op op) const;

  Export* exp_ = nullptr;  // dereferenced only on the loop thread
  size_t connections_ = 0;
  bool tags_ = false;  // EngineOptions::on_complete is set
};

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
  // above. `flags` are NBD_CMD_FLAG_* as the core accepts them. Loop
  // thread only; other threads use thread_safe().
  //
  // With a Tag instead of a Done the command completes through
  // EngineOptions::on_complete (refused with InvalidArgument, EINVAL, if
  // that is null); a tagged BlockStatus calls on_extents first.
  absl::Status Read(size_t conn, uint64_t offset, absl::Span<uint8_t> buffer,
                    Done done, uint16_t flags = 0);
  absl::Status Read(size_t conn, uint64_t offset, absl::Span<uint8_t> buffer,
                    Tag tag, uint16_t flags = 0);
  absl::Status Write(size_t conn, uint64_t offset,
                     absl::Span<const uint8_t> data, uint16_t flags, Done done);
  absl::Status Write(size_t conn, uint64_t offset,
                     absl::Span<const uint8_t> data, uint16_t flags, Tag tag);
  absl::Status WriteZeroes(size_t conn, uint64_t offset, uint64_t length,
                           uint16_t flags, Done done);
  absl::Status WriteZeroes(size_t conn, uint64_t offset, uint64_t length,
                           uint16_t flags, Tag tag);
  absl::Status Trim(size_t conn, uint64_t offset, uint64_t length,
                    uint16_t flags, Done done);
  absl::Status Trim(size_t conn, uint64_t offset, uint64_t length,
                    uint16_t flags, Tag tag);
  absl::Status Cache(size_t conn, uint64_t offset, uint64_t length,
                     uint16_t flags, Done done);
  absl::Status Cache(size_t conn, uint64_t offset, uint64_t length,
                     uint16_t flags, Tag tag);
  absl::Status Flush(size_t conn, Done done, uint16_t flags = 0);
  absl::Status Flush(size_t conn, Tag tag, uint16_t flags = 0);
  absl::Status BlockStatus(size_t conn, uint64_t offset, uint64_t length,
                           ExtentsDone done, uint16_t flags = 0);
  absl::Status BlockStatus(size_t conn, uint64_t offset, uint64_t length,
                           Tag tag, uint16_t flags = 0);

  // ---- Other threads --------------------------------------------------------
  // Loop thread: a handle through which any thread issues this export's
  // commands (see "Threads" above). Cheap; make one per thread or share.
  ThreadSafeExport thread_safe();

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
  friend class ThreadSafeExport;
  Export(Engine* engine, std::string uri);
  absl::Status Issue(size_t conn, internal::Op op);
  // Issues `op`; on success it has been moved from, on a refusal it is
  // untouched (so a submitted command can complete with the refusal).
  absl::Status IssueOp(size_t conn, internal::Op& op);
  // A command from the submission queue: issued, or completed with the
  // refusal.
  void IssueSubmitted(size_t conn, internal::Op op);

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

// The completion of a command issued with a Tag: which export and
// connection, the tag, and the status (as a Done would get it).
using CompletionHandler = std::function<void(
    const Export& exp, size_t conn, uint64_t tag, const absl::Status& status)>;
// The extents of a BlockStatus issued with a Tag, consecutive from
// `offset` (as an ExtentsDone would get them; empty if none arrived).
using ExtentsHandler =
    std::function<void(const Export& exp, size_t conn, uint64_t tag,
                       uint64_t offset, const std::vector<Extent>& extents)>;

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
  // Commands issued with a Tag complete here, once each, on the loop
  // thread, under the callbacks' rules. Null: tagged commands are refused
  // (InvalidArgument, EINVAL).
  CompletionHandler on_complete = nullptr;
  // A tagged BlockStatus calls this once, right before its on_complete
  // (whatever the status). Null: the extents of tagged block status
  // commands are dropped.
  ExtentsHandler on_extents = nullptr;
  // Receives the adapters' system call counts if set (it must outlive the
  // Engine; several engines may share one); otherwise the Engine keeps its
  // own. counters() reads whichever is used.
  adapters::SyscallCounters* counters = nullptr;
  // What the URIs given to Open() may ask for (adapters/connect/uri.h).
  // The default is libnbd's: no local files (tls-certificates,
  // tls-psk-file); UriPolicy::Trusted() for URIs from the program's user.
  adapters::UriPolicy uri_policy = adapters::UriPolicy();
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
  // does. `options.export_name` defaults to the URI's. Errors name the
  // URI: a URI that does not parse and a failed handshake as "URI: ..."
  // (with the code and errno of the cause: ETIMEDOUT "URI: handshake: no
  // reply from the server for 30s"), connect errors as adapters/connect
  // words them (the URI, re-formatted, first). On failure every
  // connection of the attempt is closed before Open() returns (see
  // Attach()).
  absl::StatusOr<Export*> Open(std::string_view uri, size_t connections,
                               ClientOptions options = {});
  // One connection over `fd`, a connected stream socket (owned from now
  // on), e.g. from adapters::ConnectUnix or a socketpair; it is validated
  // and made non-blocking (adapters::AdoptFd). `name` stands for the URI
  // in messages: errors read "NAME: ...". On failure `fd` is closed
  // before Attach() returns. (epoll and io_uring give the connection up
  // by running their loop until it is closed; io_uring first waits for
  // the kernel to hand back the operations in flight, which the socket's
  // shutdown makes immediate. That wait is bounded by a second, past
  // which the descriptor is closed in a later round.)
  absl::StatusOr<Export*> Attach(int fd, ClientOptions options,
                                 std::string name = "fd");

  // Runs what other threads queued, sends what was issued, waits until at
  // least one command completes
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
  // flight, e.g. to see an idle connection's server go away or for other
  // threads' submissions (a post wakes it; `done()` is checked after the
  // posted work ran). The blocking adapter cannot watch an idle connection
  // (it reads only inside calls): with nothing queued it waits only for
  // posts, and if no handle was ever handed out (submitter(),
  // thread_safe()) it returns FailedPrecondition (EINVAL) at once instead.
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
  // Refused as the core refuses Client::Shutdown(flags): unknown flags
  // (InvalidArgument, EINVAL); see "Refusals" below.
  absl::Status Shutdown(uint32_t flags, absl::Duration timeout);
  absl::Status Shutdown() { return Shutdown(0, options_.timeout); }
  // The same with Client::Disconnect(): NBD_CMD_DISC goes out right behind
  // the commands already queued instead of after their replies (a server
  // may answer those with ESHUTDOWN). The blocking adapter executes what is
  // queued first, then shuts down. Refused as Client::Disconnect() refuses
  // (FailedPrecondition, EINVAL): a connection in option mode or already
  // disconnecting, with every adapter.
  //
  // Refusals: both check first, on every connection still open, what the
  // core would refuse. If all of them refuse, the call returns that
  // refusal (its message prefixed by the export's URI) at once and changes
  // nothing: no request, no deadline, no wait, no callback, and the queue
  // of other threads stays open. If only some refuse, those are left as
  // they were (not ended, not waited for), the others end, and the refusal
  // is returned unless an earlier problem came first.
  absl::Status Disconnect(absl::Duration timeout);

  // System calls made by the adapters so far (all connections).
  const adapters::SyscallCounters& counters() const { return *counters_; }

  // Loop thread: a handle through which any thread posts tasks to the loop
  // thread (see "Threads" above). Export::thread_safe() issues commands.
  Submitter submitter();

 private:
  friend class Export;
  explicit Engine(EngineOptions options);
  absl::Status Connect(Export& exp, int fd, ClientOptions options);
  // Keeps a failed Export (see abandoned_) and returns `why`.
  absl::Status Abandon(std::unique_ptr<Export> exp, absl::Status why);
  absl::Status End(bool disconnect, uint32_t flags, absl::Duration timeout);
  // The first refusal (named by its export's URI) if every connection
  // still open would refuse End(disconnect, flags); OK otherwise.
  absl::Status RefuseEnd(bool disconnect, uint32_t flags) const;
  size_t Dispatch();
  absl::Status NoReply() const;
  absl::Status HandshakeFailed(const absl::Status& s) const;
  absl::Status TimedOut();
  void Note(std::string_view line) const;
  // Runs the callback (or on_complete/on_extents) of a finished command.
  void Complete(internal::Op& op, const absl::Status& status);
  // Runs what other threads queued, if anything (one atomic load if not).
  void RunSubmitted();
  // Closes the queue and runs what it still holds.
  void CloseSubmissions();

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
  // Work from other threads (shared with the handles, which may outlive
  // the Engine), and the batch being run.
  std::shared_ptr<internal::SubmitQueue> submissions_;
  std::vector<internal::Submission> submitted_;
  // A handle was handed out: the blocking adapter's RunUntil() then waits
  // for posts when nothing is queued.
  bool threads_ = false;
};

}  // namespace nbd::engine

#endif  // NBD_ADAPTERS_ENGINE_ENGINE_H_
