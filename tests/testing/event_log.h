// One-line text forms of client events, for comparing runs and asserting
// on what happened. Status messages are kept apart from the lines so tests
// can match lines exactly without depending on message wording.
#ifndef NBD_TESTS_TESTING_EVENT_LOG_H_
#define NBD_TESTS_TESTING_EVENT_LOG_H_

#include <string>

#include "protocol/client/client.h"
#include "protocol/client/events.h"

namespace nbd::test {

const char* OptionName(Option option);
const char* CommandName(Command command);

// E.g. "CommandCompleted cookie=1 READ ok", "Dead EPROTO", "Closed".
// `message` receives the status message carried by the event ("" if none).
std::string FormatEvent(const ClientEvent& event, std::string* message);

}  // namespace nbd::test

#endif  // NBD_TESTS_TESTING_EVENT_LOG_H_
