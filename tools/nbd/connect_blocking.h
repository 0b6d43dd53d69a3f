// Opening a BlockingClient for a URI, bounded by --timeout, with --debug
// tracing, for the commands that use the blocking adapter (info, map).
#ifndef NBD_TOOLS_NBD_CONNECT_BLOCKING_H_
#define NBD_TOOLS_NBD_CONNECT_BLOCKING_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "adapters/blocking/blocking_client.h"
#include "protocol/client/options.h"
#include "tools/nbd/command.h"

namespace nbd::tool {

// Connects to `uri` and runs the handshake (parks in option mode if
// `options.option_mode`). The export name comes from the URI.
absl::StatusOr<std::unique_ptr<adapters::BlockingClient>> ConnectBlocking(
    const std::string& uri, ClientOptions options, const GlobalOptions& g);

// Ends the connection (NBD_CMD_DISC or NBD_OPT_ABORT) and waits at most
// --timeout for the server to close. A server that does not close in time
// only gets a debug note: the work was done.
void DisconnectBlocking(adapters::BlockingClient& client,
                        const GlobalOptions& g);

}  // namespace nbd::tool

#endif  // NBD_TOOLS_NBD_CONNECT_BLOCKING_H_
