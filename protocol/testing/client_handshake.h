// The fixed-newstyle handshake a Client runs by itself, as scenario steps.
//
// The steps follow libnbd's option order and check each option the client
// sends before the server answers it, so a client that sends options out of
// order or pipelines them fails the check:
//   greeting -> client flags -> [EXTENDED_HEADERS -> ACK | ERR_UNSUP]
//   -> [STRUCTURED_REPLY -> ACK | ERR_UNSUP] (skipped if EH was acked)
//   -> [SET_META_CONTEXT -> META_CONTEXT x n + ACK] (if SR/EH is on)
//   -> GO (BLOCK_SIZE/NAME/DESCRIPTION) -> INFO export [+ more] + ACK
// What the client is expected to ask for comes from the scenario's
// ClientOptions; what the server answers comes from HandshakeSpec.
#ifndef NBD_PROTOCOL_TESTING_CLIENT_HANDSHAKE_H_
#define NBD_PROTOCOL_TESTING_CLIENT_HANDSHAKE_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "protocol/client/client.h"
#include "protocol/constants.h"
#include "protocol/testing/client_script.h"

namespace nbd::testing {

// Transmission flags with every optional command advertised.
inline constexpr uint16_t kAllCommandFlags =
    kTransmitHasFlags | kTransmitSendFlush | kTransmitSendFua |
    kTransmitSendTrim | kTransmitSendWriteZeroes | kTransmitSendDf |
    kTransmitCanMultiConn | kTransmitSendCache | kTransmitSendFastZero;

struct HandshakeSpec {
  uint16_t handshake_flags = kFlagFixedNewstyle | kFlagNoZeroes;
  bool ack_extended_headers = false;   // else ERR_UNSUP
  bool ack_structured_replies = true;  // else ERR_UNSUP
  // The server's META_CONTEXT replies to SET_META_CONTEXT.
  std::vector<MetaContext> contexts = {{1, kContextBaseAllocation}};
  uint64_t size = 1 << 20;
  uint16_t transmission_flags = kAllCommandFlags;
  // Sent as NBD_INFO_BLOCK_SIZE (whether the client asked or not).
  std::optional<InfoBlockSize> block_size;
  // Sent as NBD_INFO_NAME / _DESCRIPTION when non-empty.
  std::string canonical_name;
  std::string description;
};

// The info requests a client with `options` puts in NBD_OPT_GO.
std::vector<uint16_t> ExpectedGoInfos(const ClientOptions& options);
// The queries of its automatic SET_META_CONTEXT.
std::vector<std::string> ExpectedMetaQueries(const ClientOptions& options);

// Appends the server's NBD_OPT_GO (or INFO) success answer to `server`.
void AppendInfoReplies(Server& server, Option option,
                       const HandshakeSpec& spec);

// Appends the automatic handshake up to the client's NBD_OPT_GO, checked
// and left unanswered, so the test can answer it (an error, an unexpected
// reply). Returns whether the server acked extended headers (from then on
// RunContext::extended says so too).
bool AppendHandshakeUntilGo(Scenario& scenario, const HandshakeSpec& spec = {});

// Appends a whole automatic handshake, ending with the client connected
// and the run's header format set. The log gains one "Connected" line.
void AppendHandshake(Scenario& scenario, const HandshakeSpec& spec = {});

// A scenario that starts with AppendHandshakeUntilGo().
Scenario ScenarioUntilGo(ClientOptions options = {},
                         const HandshakeSpec& spec = {});

// A scenario that starts with AppendHandshake().
Scenario ConnectedScenario(ClientOptions options = {},
                           const HandshakeSpec& spec = {});

}  // namespace nbd::testing

#endif  // NBD_PROTOCOL_TESTING_CLIENT_HANDSHAKE_H_
