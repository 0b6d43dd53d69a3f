// The server kit's script: a scripted NBD client for nbd::ServerSession
// tests, the mirror of the client kit (client_script.h).
//
// A ServerScenario is a list of steps, built once and replayed by the runner
// (server_runner.h) against a fresh ServerSession per replay, in every Mode
// (modes.h: each input split and both input paths). Each step does one of:
//
//   Send(ClientBytes)   the client sends bytes. ClientBytes() builds them:
//                       client flags, options (GO, INFO, EXPORT_NAME, meta
//                       contexts, any number with any data), requests in
//                       the compact or extended form, WRITE payloads, raw
//                       bytes.
//   Eof(), TransportError(status)
//                       the client's side ends (FeedEof, FeedTransportError).
//   Expect(ServerSends) checks, message by message, what the session sent
//                       since the previous check: the greeting, option
//                       replies, the export-name reply, simple replies and
//                       structured or extended chunks, raw bytes, Nothing()
//                       more.
//   ReplyOk/ReplyError/ReplyRead/ReplyReadError/ReplyBlockStatus
//                       the embedder answers the request the session
//                       reported under a label.
//   Call/Do             anything else on the session (misuse, queries);
//                       Snapshot() logs phase and in-flight count.
//   HoldOutput/Consume/ReleaseOutput
//                       stops draining the session's output, takes n bytes,
//                       resumes (for output limits and ReplySent timing).
//
// Labels tie a run together: ClientBytes().Req("r", ...) sends a request
// whose cookie is the label's (labels get cookies 1, 2, 3, ... in the order
// they are first used; reusing a label reuses its cookie), the session's
// ServerRequest for that cookie is logged under the label, ReplyOk("r")
// answers it, and ServerSends().Simple("r") or .ChunkData("r", ...) check the
// reply. Everything that depends on the run lives in ServerRunContext and is
// resolved when the step executes, because each replay has its own session.
//
// Formats: requests and reply checks follow ServerRunContext::extended,
// which the runner sets from the session's TransmissionStarted event (a
// Context step can override it); CompactReq()/ExtendedReq() force one.
//
// Ownership: a step's bytes are built when it runs and copied into the
// session (Feed) or its receive buffer; READ data given to ReplyRead() is
// held by the session through its keepalive until the reply has been sent.
//
// Failures: a check that does not match is recorded as a failure of that
// step, with what was expected and a hex dump of what the session sent; the
// runner reports it as a GoogleTest failure (run_compare.h has the format).
#ifndef NBD_PROTOCOL_TESTING_SERVER_SCRIPT_H_
#define NBD_PROTOCOL_TESTING_SERVER_SCRIPT_H_

#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "protocol/constants.h"
#include "protocol/server/events.h"
#include "protocol/server/options.h"
#include "protocol/server/server.h"
#include "protocol/testing/request_record.h"
#include "protocol/testing/text.h"
#include "protocol/wire.h"

namespace nbd::testing {

// State of one replay of a ServerScenario.
class ServerRunContext {
 public:
  // The cookie of `label`, assigned on first use (1, 2, 3, ...).
  uint64_t CookieOf(const std::string& label);
  // The label whose cookie is `cookie`, or "cookie=N" if none has it: the
  // name under which the log, `outstanding` and the Reply*() steps know a
  // request.
  std::string NameOf(uint64_t cookie) const;

  // What the client sent last under each label.
  std::map<std::string, RequestRecord> sent;
  // ServerRequests the session reported and the script has not answered,
  // by NameOf(cookie), oldest first. Their payload spans stay valid until
  // answered.
  std::map<std::string, std::deque<ServerRequest>> outstanding;
  // Handle -> label of every request reported, for ReplySent lines.
  std::map<RequestHandle, std::string> handles;
  // Whether requests and replies use extended (32-byte) headers and
  // whether replies may be structured; set from TransmissionStarted.
  bool extended = false;
  bool structured = false;

 private:
  std::map<std::string, uint64_t> cookies_;
};

// Bytes sent by the scripted client in one step. Methods append in call
// order; nothing is checked, so any malformed input can be built.
class ClientBytes {
 public:
  // ---- Handshake ----------------------------------------------------------
  ClientBytes& Flags(uint32_t client_flags = kClientFlagFixedNewstyle |
                                             kClientFlagNoZeroes);
  // An option request: header (magic, option, data length) and data.
  ClientBytes& Opt(Option option, Bytes data = {});
  // Any option number, e.g. one the server does not know.
  ClientBytes& OptNumber(uint32_t option, Bytes data = {});
  // Only an option header claiming `length` bytes of data (send the data,
  // or not, with Raw()).
  ClientBytes& OptHeader(uint32_t option, uint32_t length);
  // NBD_OPT_GO or NBD_OPT_INFO on `export_name`, asking for `infos`.
  ClientBytes& OptInfoRequest(Option option, std::string export_name = "",
                              std::vector<uint16_t> infos = {});
  // NBD_OPT_SET_META_CONTEXT or NBD_OPT_LIST_META_CONTEXT.
  ClientBytes& OptMeta(Option option, std::string export_name,
                       std::vector<std::string> queries);
  ClientBytes& OptExportName(std::string name);

  // ---- Transmission -------------------------------------------------------
  // A request with `label`'s cookie, in the run's format: compact unless
  // extended headers are in force. A compact request keeps the low 32 bits
  // of `length`. `flags` go out exactly as given.
  ClientBytes& Req(std::string label, Command command, uint64_t offset,
                   uint64_t length, uint16_t flags = 0);
  ClientBytes& CompactReq(std::string label, Command command, uint64_t offset,
                          uint32_t length, uint16_t flags = 0);
  ClientBytes& ExtendedReq(std::string label, Command command, uint64_t offset,
                           uint64_t length, uint16_t flags = 0);
  // A WRITE of `data` at `offset` followed by its payload; under extended
  // headers with NBD_CMD_FLAG_PAYLOAD_LEN added, as the spec requires.
  ClientBytes& Write(std::string label, uint64_t offset, Bytes data,
                     uint16_t flags = 0);
  ClientBytes& Raw(Bytes bytes);
  // Everything `more` sends, after what this sends.
  ClientBytes& Then(const ClientBytes& more);

  Bytes Build(ServerRunContext& ctx) const;

 private:
  using Part = std::function<void(ServerRunContext&, Bytes&)>;
  ClientBytes& Add(Part part);
  std::vector<Part> parts_;
};

// What the session sent, consumed front to back by ServerSends checks.
struct ServerStream {
  Bytes bytes;
  size_t pos = 0;
  size_t remaining() const { return bytes.size() - pos; }
};

// Checks on the session's output. Each method expects one message at the
// cursor; Check() runs them in order and reports the first mismatch.
// Parameters that are std::optional are not compared when nullopt (the
// session's own error messages, for example, are for people).
class ServerSends {
 public:
  // ---- Handshake ----------------------------------------------------------
  ServerSends& Greeting(uint16_t handshake_flags = kFlagFixedNewstyle |
                                                   kFlagNoZeroes);
  // One option reply of `type` to `option`.
  ServerSends& Rep(Option option, OptionReplyType type,
                   std::optional<Bytes> payload = std::nullopt);
  ServerSends& RepAck(Option option);
  ServerSends& RepError(Option option, OptionReplyType type,
                        std::optional<std::string> message = std::nullopt);
  ServerSends& RepServer(std::string name, std::string description = "");
  ServerSends& RepInfoExport(Option option, uint64_t size, uint16_t flags);
  ServerSends& RepInfoName(Option option, std::string name);
  ServerSends& RepInfoDescription(Option option, std::string description);
  ServerSends& RepInfoBlockSize(Option option, uint32_t minimum,
                                uint32_t preferred, uint32_t maximum);
  ServerSends& RepMetaContext(Option option, uint32_t id, std::string name);
  // The reply to NBD_OPT_EXPORT_NAME: 10 bytes, or 134 without NO_ZEROES.
  ServerSends& ExportNameReply(uint64_t size, uint16_t flags, bool no_zeroes);

  // ---- Transmission -------------------------------------------------------
  // A simple reply to `label` with `error`; `data` follows it (a READ's).
  ServerSends& Simple(std::string label, NbdError error = NbdError::kOk,
                      Bytes data = {});
  // One chunk in the run's header format. An extended header must echo the
  // request's offset. `payload` nullopt: any payload.
  ServerSends& Chunk(std::string label, uint16_t flags, uint16_t type,
                     std::optional<Bytes> payload);
  ServerSends& ChunkData(std::string label, uint64_t offset, Bytes data,
                         bool done = false);
  ServerSends& ChunkHole(std::string label, uint64_t offset, uint32_t length,
                         bool done = false);
  ServerSends& ChunkNone(std::string label);  // NONE with DONE
  ServerSends& ChunkError(std::string label, NbdError error,
                          std::optional<std::string> message = std::nullopt,
                          bool done = true);
  ServerSends& ChunkErrorOffset(
      std::string label, NbdError error, uint64_t offset,
      std::optional<std::string> message = std::nullopt, bool done = true);
  // BLOCK_STATUS, or BLOCK_STATUS_EXT under extended headers.
  ServerSends& ChunkBlockStatus(std::string label, uint32_t context_id,
                                std::vector<Extent> extents, bool done = true);

  // Exactly these bytes.
  ServerSends& Raw(Bytes bytes);
  // Nothing beyond what was checked so far.
  ServerSends& Nothing();
  // Accepts everything sent so far unchecked.
  ServerSends& SkipAll();

  absl::Status Check(ServerStream& stream, ServerRunContext& ctx) const;

 private:
  using Item = std::function<absl::Status(ServerStream&, ServerRunContext&)>;
  ServerSends& Add(Item item);
  std::vector<Item> items_;
};

// One step of a ServerScenario; see there for the kinds.
struct ServerStep {
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
  ClientBytes client;
  ServerSends expect;
  // Runs a call; returns the text to log ("" logs nothing).
  std::function<std::string(ServerSession&, ServerRunContext&)> call;
  std::function<void(ServerRunContext&)> context;
  size_t consume = 0;
  absl::Status error;  // kTransportError
};

// "send", "eof", "expect", "call", ...: how failure messages name a step.
const char* ServerStepKindName(ServerStep::Kind kind);

// A conversation between a scripted client and a ServerSession built from
// `options` (which must have at least one export).
class ServerScenario {
 public:
  explicit ServerScenario(ServerOptions options);

  // The client sends bytes (fed whole or split, depending on the mode).
  ServerScenario& Send(ClientBytes bytes);
  // The client closes its side (FeedEof).
  ServerScenario& Eof();
  // The transport fails (FeedTransportError(error)).
  ServerScenario& TransportError(absl::Status error);
  // Checks the session's output since the previous check.
  ServerScenario& Expect(ServerSends checks);

  // Answers the oldest unanswered request reported under `label`; logs
  // "reply <label> <what> -> <status>", e.g. "reply r read -> ok". A label
  // with no such request is a failure of the step.
  ServerScenario& ReplyOk(std::string label);
  ServerScenario& ReplyError(std::string label, int errno_value,
                             std::string message = "");
  // READ data: one piece holding `data` at the request's offset (its length
  // must be the request's for the session to accept it).
  ServerScenario& ReplyRead(std::string label, Bytes data);
  // Pieces at the request's offset: data where `data` is set, else a hole
  // of `hole` bytes.
  struct Piece {
    std::optional<Bytes> data;
    uint64_t hole = 0;
    static Piece Data(Bytes bytes) { return {std::move(bytes), 0}; }
    static Piece Hole(uint64_t length) { return {std::nullopt, length}; }
  };
  ServerScenario& ReplyReadPieces(std::string label, std::vector<Piece> pieces);
  // `data` read from the request's offset, then a failure at the byte after
  // it.
  ServerScenario& ReplyReadError(std::string label, Bytes data, int errno_value,
                                 std::string message = "");
  ServerScenario& ReplyBlockStatus(std::string label,
                                   std::vector<Extent> extents);

  // Calls the session; logs "call <name> -> <status>".
  ServerScenario& Call(
      std::string name,
      std::function<absl::Status(ServerSession&, ServerRunContext&)> fn);
  // Anything else; logs the returned text unless it is empty.
  ServerScenario& Do(
      std::function<std::string(ServerSession&, ServerRunContext&)> fn);
  // Logs "phase=<phase> in_flight=<n>".
  ServerScenario& Snapshot();
  ServerScenario& Context(std::function<void(ServerRunContext&)> fn);
  // Output is normally drained after every step. While held, only
  // Consume(n) takes output, n bytes at a time.
  ServerScenario& HoldOutput();
  ServerScenario& Consume(size_t n);
  ServerScenario& ReleaseOutput();

  const ServerOptions& options() const { return options_; }
  const std::vector<ServerStep>& steps() const { return steps_; }

 private:
  ServerScenario& Add(ServerStep step);
  // A step that answers `label`'s oldest request with `reply`.
  ServerScenario& Answer(
      std::string label, std::string what,
      std::function<absl::Status(ServerSession&, const ServerRequest&)> reply);
  ServerOptions options_;
  std::vector<ServerStep> steps_;
};

}  // namespace nbd::testing

#endif  // NBD_PROTOCOL_TESTING_SERVER_SCRIPT_H_
