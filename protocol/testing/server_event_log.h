// One-line text forms of server events, for comparing the runs of a
// ServerScenario and asserting on what happened. Status messages are kept
// apart from the lines so tests can match lines exactly without depending
// on message wording.
#ifndef NBD_PROTOCOL_TESTING_SERVER_EVENT_LOG_H_
#define NBD_PROTOCOL_TESTING_SERVER_EVENT_LOG_H_

#include <string>

#include "protocol/server/events.h"
#include "protocol/testing/server_script.h"

namespace nbd::testing {

// The lines, with requests named by the label whose cookie they carry
// ("cookie=N" if no label has it):
//   "TransmissionStarted export=0 structured=1 extended=0"
//   "Request r READ offset=0 length=512"        flags only when set:
//   "Request w WRITE offset=0 length=4 flags=0x1 payload=4"
//   "ReplySent r", "Trace <line>", "Closed", "Dead EPROTO"
// `message` receives the status message carried by the event ("" if none).
std::string FormatServerEvent(const ServerEvent& event,
                              const ServerRunContext& ctx,
                              std::string* message);

}  // namespace nbd::testing

#endif  // NBD_PROTOCOL_TESTING_SERVER_EVENT_LOG_H_
