// One-line text forms of client events, for comparing runs and asserting
// on what happened. Status messages are kept apart from the lines so tests
// can match lines exactly without depending on message wording.
#ifndef NBD_PROTOCOL_TESTING_CLIENT_EVENT_LOG_H_
#define NBD_PROTOCOL_TESTING_CLIENT_EVENT_LOG_H_

#include <string>

#include "absl/strings/string_view.h"
#include "protocol/client/client.h"
#include "protocol/client/events.h"

namespace nbd::testing {

// "READ", "WRITE_ZEROES": CommandName() (protocol/names.h) without its
// "NBD_CMD_" prefix, as event lines show commands.
absl::string_view ShortCommandName(Command command);

// E.g. "CommandCompleted cookie=1 READ ok", "Dead EPROTO", "Closed".
// Command events with a non-zero tag end in " tag=N".
// `message` receives the status message carried by the event ("" if none).
std::string FormatEvent(const ClientEvent& event, std::string* message);

}  // namespace nbd::testing

#endif  // NBD_PROTOCOL_TESTING_CLIENT_EVENT_LOG_H_
