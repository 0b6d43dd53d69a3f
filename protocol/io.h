// Types shared by the client and server cores to talk to a transport.
#ifndef NBD_PROTOCOL_IO_H_
#define NBD_PROTOCOL_IO_H_

#include <cstddef>
#include <cstdint>

namespace nbd {

// One piece of a gather list. Layout-compatible with struct iovec (the
// adapters static_assert this), so a span of IoSlice can go straight to
// writev/sendmsg.
struct IoSlice {
  const uint8_t* data;
  size_t size;
};

// What the transport should wait for.
enum class Direction { kNone = 0, kRead = 1, kWrite = 2, kBoth = 3 };

}  // namespace nbd

#endif  // NBD_PROTOCOL_IO_H_
