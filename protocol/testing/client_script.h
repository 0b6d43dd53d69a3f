// The client kit's script: a scripted NBD server for nbd::Client tests.
//
// A Scenario is a list of steps, built once and replayed by the runner
// (client_runner.h) against a fresh Client per replay, in every Mode
// (modes.h: each input split and both input paths). Each step does one of:
//
//   Send(Server)        the server sends bytes. Server() builds them:
//                       greetings, option replies, simple, structured or
//                       extended replies and chunks, raw bytes.
//   Eof(), TransportError(status)
//                       the server's side ends (FeedEof, FeedTransportError).
//   Expect(ClientSends) checks, message by message, what the client sent
//                       since the previous check: client flags, options,
//                       requests (compact or extended), write payloads,
//                       Nothing() more. A request check captures the request
//                       under a label, so later replies can name it.
//   Issue/Call/Do       calls the Client (Read, Write, Disconnect, ...) and
//                       logs the result; Snapshot() logs phase and in-flight.
//   HoldOutput/Consume/ReleaseOutput
//                       stops draining the client's output, takes n bytes,
//                       resumes (for tests of partly sent requests).
//
// Labels tie a run together: Issue("r", ...) records the cookie the client
// chose for command "r", ClientSends::Req("r", ...) checks that the request
// on the wire carries it, and Server().Simple("r") or .ChunkData("r", ...)
// answer it. Everything that depends on the run (cookies, buffers, whether
// extended headers are in force) lives in RunContext and is resolved when
// the step executes, because each replay has its own Client.
//
// Ownership: the memory a command reads into or writes from must outlive
// the command; RunContext::Buffer() gives buffers that live as long as the
// run and are compared across modes. Steps and builders are copied into the
// scenario; a Scenario can be replayed any number of times.
//
// Failures: a check that does not match is recorded as a failure of that
// step, with what was expected and a hex dump of what was sent; the runner
// reports it as a GoogleTest failure (run_compare.h has the format). Calling
// a builder never fails by itself.
#ifndef NBD_PROTOCOL_TESTING_CLIENT_SCRIPT_H_
#define NBD_PROTOCOL_TESTING_CLIENT_SCRIPT_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "protocol/client/client.h"
#include "protocol/client/events.h"
#include "protocol/client/options.h"
#include "protocol/constants.h"
#include "protocol/testing/request_record.h"
#include "protocol/testing/text.h"
#include "protocol/wire.h"

namespace nbd::testing {

// State of one replay of a scenario.
class RunContext {
 public:
  // The run's buffer called `label`, created on first use with `size` bytes
  // of `fill`. References stay valid for the whole run.
  Bytes& Buffer(const std::string& label, size_t size, uint8_t fill = 0);
  // An existing buffer (fails the test and returns an empty one if missing).
  Bytes& Buffer(const std::string& label);
  const std::map<std::string, Bytes>& buffers() const { return buffers_; }

  // Requests by label: filled by Scenario::Issue() (cookie only) and by
  // ClientSends::Req() (everything).
  std::map<std::string, RequestRecord> requests;
  // Cookies of accepted commands, for the exactly-once check.
  std::set<Cookie> accepted;
  // Whether extended headers are in force: requests are then 32 bytes and
  // Server::Chunk*() use 32-byte reply headers.
  bool extended = false;

 private:
  std::map<std::string, Bytes> buffers_;
};

// Names a cookie: a label captured earlier in the run, or a literal value
// (for replies to cookies the client never used).
class CookieRef {
 public:
  CookieRef(const char* label) : label_(label) {}  // NOLINT: implicit
  CookieRef(std::string label) : label_(std::move(label)) {}  // NOLINT
  static CookieRef Value(Cookie cookie);

  Cookie Resolve(const RunContext& ctx) const;
  // The offset of the labelled request (0 for a literal), which extended
  // reply headers echo.
  uint64_t RequestOffset(const RunContext& ctx) const;

 private:
  CookieRef() = default;
  std::string label_;
  std::optional<Cookie> value_;
};

// Bytes sent by the server in one step. Methods append in call order.
class Server {
 public:
  // ---- Handshake ----------------------------------------------------------
  Server& Greeting(uint16_t handshake_flags = kFlagFixedNewstyle |
                                              kFlagNoZeroes);
  Server& Oldstyle(uint64_t size, uint16_t transmission_flags,
                   uint16_t global_flags = 0);
  // An option reply with an arbitrary type and payload.
  Server& Rep(Option option, OptionReplyType type, Bytes payload = {});
  Server& RepAck(Option option);
  Server& RepError(Option option, OptionReplyType type,
                   std::string message = "");
  Server& RepServer(std::string name, std::string description = "");
  Server& RepInfoExport(Option option, uint64_t size, uint16_t flags);
  Server& RepInfoName(Option option, std::string name);
  Server& RepInfoDescription(Option option, std::string description);
  Server& RepInfoBlockSize(Option option, uint32_t minimum, uint32_t preferred,
                           uint32_t maximum);
  Server& RepMetaContext(Option option, uint32_t id, std::string name);
  // Reply to NBD_OPT_EXPORT_NAME: 10 bytes, or 134 without NO_ZEROES.
  Server& ExportNameReply(uint64_t size, uint16_t flags, bool no_zeroes);

  // ---- Transmission -------------------------------------------------------
  // Simple reply; `payload` follows it (a READ's data).
  Server& Simple(CookieRef cookie, uint32_t error = 0, Bytes payload = {});
  // One chunk, in the run's header format (RunContext::extended).
  Server& Chunk(CookieRef cookie, uint16_t flags, uint16_t type, Bytes payload);
  // A 20-byte structured header whatever the run's format. `length`
  // overrides the header's length field (payload is sent as given).
  Server& StructuredChunk(CookieRef cookie, uint16_t flags, uint16_t type,
                          Bytes payload,
                          std::optional<uint32_t> length = std::nullopt);
  // A 32-byte extended header whatever the run's format. `offset` defaults
  // to the request's offset.
  Server& ExtendedChunk(CookieRef cookie, uint16_t flags, uint16_t type,
                        Bytes payload,
                        std::optional<uint64_t> offset = std::nullopt,
                        std::optional<uint64_t> length = std::nullopt);
  Server& ChunkData(CookieRef cookie, uint64_t offset, Bytes data,
                    bool done = false);
  Server& ChunkHole(CookieRef cookie, uint64_t offset, uint32_t length,
                    bool done = false);
  Server& ChunkBlockStatus(CookieRef cookie, uint32_t context_id,
                           std::vector<Extent> extents, bool done = true);
  Server& ChunkBlockStatusExt(CookieRef cookie, uint32_t context_id,
                              std::vector<Extent> extents, bool done = true);
  Server& ChunkError(CookieRef cookie, uint32_t nbd_error,
                     std::string message = "", bool done = true);
  Server& ChunkError(CookieRef cookie, NbdError error, std::string message = "",
                     bool done = true);
  Server& ChunkErrorOffset(CookieRef cookie, uint32_t nbd_error,
                           uint64_t offset, std::string message = "",
                           bool done = true);
  Server& ChunkNone(CookieRef cookie);  // NONE with DONE

  Server& Raw(Bytes bytes);

  Bytes Build(const RunContext& ctx) const;

 private:
  using Part = std::function<void(const RunContext&, Bytes&)>;
  Server& Add(Part part);
  std::vector<Part> parts_;
};

// What the client sent, consumed front to back by ClientSends checks.
struct ClientStream {
  Bytes bytes;
  size_t pos = 0;
  size_t remaining() const { return bytes.size() - pos; }
};

// Checks on the client's output. Each method expects one message at the
// cursor; Check() runs them in order and reports the first mismatch.
class ClientSends {
 public:
  ClientSends& Flags(uint32_t client_flags);
  // An option with no data (STARTTLS, STRUCTURED_REPLY, LIST, ABORT, ...).
  ClientSends& Opt(Option option);
  ClientSends& OptData(Option option, Bytes data);
  // NBD_OPT_GO or NBD_OPT_INFO. Info requests are compared as a set: the
  // spec does not order them.
  ClientSends& OptInfoRequest(Option option, std::string export_name,
                              std::vector<uint16_t> infos);
  // NBD_OPT_SET_META_CONTEXT or NBD_OPT_LIST_META_CONTEXT.
  ClientSends& OptMeta(Option option, std::string export_name,
                       std::vector<std::string> queries);
  ClientSends& OptExportName(std::string name);
  // A request in the run's format. Captures it under `label`; if the label
  // was already issued, the cookie must match. Flag bits in `ignore_flags`
  // are not compared.
  ClientSends& Req(std::string label, Command command, uint16_t flags,
                   uint64_t offset, uint64_t length, uint16_t ignore_flags = 0);
  ClientSends& Payload(Bytes bytes);
  // Nothing beyond what was checked so far.
  ClientSends& Nothing();
  // Accepts everything sent so far unchecked (for steps that only care
  // about what comes next).
  ClientSends& SkipAll();

  absl::Status Check(ClientStream& stream, RunContext& ctx) const;

 private:
  using Item = std::function<absl::Status(ClientStream&, RunContext&)>;
  ClientSends& Add(Item item);
  std::vector<Item> items_;
};

// One step of a scenario; see Scenario for the kinds.
struct Step {
  enum class Kind {
    kSend,
    kEof,
    kTransportError,
    kExpect,
    kCall,
    kSnapshot,
    kContext,
    kHoldOutput,
    kReleaseOutput,
    kConsume,
  };
  Kind kind = Kind::kSend;
  std::string name;
  Server server;
  ClientSends expect;
  // Runs a call; returns the text to log ("" logs nothing).
  std::function<std::string(Client&, RunContext&)> call;
  std::function<void(RunContext&)> context;
  size_t consume = 0;
  absl::Status error;  // kTransportError
};

// "send", "eof", "expect", "call", ...: how failure messages name a step.
const char* StepKindName(Step::Kind kind);

// A conversation between a fake server and a Client built from `options`.
class Scenario {
 public:
  explicit Scenario(ClientOptions options = {});

  // The server sends bytes (fed whole or split, depending on the mode).
  Scenario& Send(Server server);
  // The server closes its side (FeedEof).
  Scenario& Eof();
  // The transport fails (FeedTransportError(error)).
  Scenario& TransportError(absl::Status error);
  // Checks the client's output since the previous check.
  Scenario& Expect(ClientSends checks);
  // Calls the client; logs "call <name> -> <status>".
  Scenario& Call(std::string name,
                 std::function<absl::Status(Client&, RunContext&)> fn);
  // Issues a command; logs "issue <label> -> cookie=N" or the error, and
  // records the cookie under `label`.
  Scenario& Issue(
      std::string label,
      std::function<absl::StatusOr<Cookie>(Client&, RunContext&)> fn);
  // Issues Client::Read(offset, ...) into the run's buffer `label` of
  // `length` bytes, filled with `fill` first (so untouched bytes show).
  Scenario& IssueRead(std::string label, uint64_t offset, size_t length,
                      ReadOptions options = {}, uint8_t fill = 0);
  // Anything else; logs the returned text unless it is empty.
  Scenario& Do(std::function<std::string(Client&, RunContext&)> fn);
  // Logs "phase=<phase> in_flight=<n>".
  Scenario& Snapshot();
  Scenario& Context(std::function<void(RunContext&)> fn);
  // Output is normally drained after every step. While held, only
  // Consume(n) takes output, n bytes at a time.
  Scenario& HoldOutput();
  Scenario& Consume(size_t n);
  Scenario& ReleaseOutput();

  const ClientOptions& options() const { return options_; }
  const std::vector<Step>& steps() const { return steps_; }

 private:
  Scenario& Add(Step step);
  ClientOptions options_;
  std::vector<Step> steps_;
};

}  // namespace nbd::testing

#endif  // NBD_PROTOCOL_TESTING_CLIENT_SCRIPT_H_
