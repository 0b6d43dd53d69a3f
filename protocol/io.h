// Types shared by the client and server cores to talk to a transport.
#ifndef NBD_PROTOCOL_IO_H_
#define NBD_PROTOCOL_IO_H_

#include <cstddef>
#include <cstdint>

#if __has_include(<sys/uio.h>)
#include <sys/uio.h>
#endif

namespace nbd {

// One piece of a gather list. Layout-compatible with struct iovec where the
// platform has one (checked below, at compile time, in every file that
// includes this header), so a span of IoSlice can be handed to
// writev/sendmsg/io_uring as an iovec array: reinterpret_cast<const
// iovec*>(slices.data()).
struct IoSlice {
  const uint8_t* data;
  size_t size;
};

// The layout promise above, checked against the platform's struct iovec.
// <sys/uio.h> only declares types and functions; including it calls
// nothing, so the core stays free of system calls.
#if __has_include(<sys/uio.h>)
static_assert(sizeof(IoSlice) == sizeof(::iovec));
static_assert(alignof(IoSlice) == alignof(::iovec));
static_assert(offsetof(IoSlice, data) == offsetof(::iovec, iov_base));
static_assert(offsetof(IoSlice, size) == offsetof(::iovec, iov_len));
#endif

// What the transport should wait for.
enum class Direction { kNone = 0, kRead = 1, kWrite = 2, kBoth = 3 };

}  // namespace nbd

#endif  // NBD_PROTOCOL_IO_H_
