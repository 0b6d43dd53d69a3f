// One NBD request as a runner recorded it on the wire, for both kits: the
// client kit's record of what nbd::Client sent, the server kit's of what its
// scripted client sent.
#ifndef NBD_PROTOCOL_TESTING_REQUEST_RECORD_H_
#define NBD_PROTOCOL_TESTING_REQUEST_RECORD_H_

#include <cstdint>

namespace nbd::testing {

struct RequestRecord {
  uint64_t cookie = 0;
  uint16_t type = 0;
  uint16_t flags = 0;
  uint64_t offset = 0;
  uint64_t length = 0;
};

}  // namespace nbd::testing

#endif  // NBD_PROTOCOL_TESTING_REQUEST_RECORD_H_
