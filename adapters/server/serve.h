// The glue between a ServerSession and a Backend: executes each
// ServerRequest synchronously with Backend calls and answers it. Pure over
// the Backend interface (no I/O of its own), so it runs in memory in tests
// as well as inside the epoll server.
#ifndef NBD_ADAPTERS_SERVER_SERVE_H_
#define NBD_ADAPTERS_SERVER_SERVE_H_

#include <cstddef>

#include "absl/functional/function_ref.h"
#include "adapters/server/backend.h"
#include "protocol/server/server.h"

namespace nbd {

// Executes `request` on `backend` and queues the reply in `session`:
//   READ          Backend::Read into a fresh buffer the reply keeps alive;
//                 hole runs become holes (OFFSET_HOLE or zeros); a
//                 failure goes out after the data read before it, as an
//                 ERROR_OFFSET at the failing offset (ReplyReadError)
//   WRITE         Backend::Write (FUA -> fua)
//   FLUSH/TRIM/CACHE  the matching call
//   WRITE_ZEROES  Backend::Zero (FUA, may-trim unless NO_HOLE, FAST_ZERO)
//   BLOCK_STATUS  Backend::BlockStatus (one extent with REQ_ONE)
// A backend error goes to the client as its errno.
void ServeRequest(ServerSession& session, Backend& backend,
                  const ServerRequest& request);

// Pops every queued event: requests are served, every other event
// (TransmissionStarted, ReplySent, ServerTrace lines, the final event) is
// passed to `on_other`. Returns the number of requests served.
size_t Serve(ServerSession& session, Backend& backend,
             absl::FunctionRef<void(const ServerEvent&)> on_other);
size_t Serve(ServerSession& session, Backend& backend);

}  // namespace nbd

#endif  // NBD_ADAPTERS_SERVER_SERVE_H_
