// Reads the first 4 KiB of an export with the synchronous adapter and
// prints how many bytes are non-zero.
#include <cstdio>
#include <vector>

#include "adapters/blocking/blocking_client.h"
#include "adapters/connect/connect.h"

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s NBD-URI\n", argv[0]);
    return 2;
  }
  auto conn = nbd::adapters::ConnectUri(argv[1]);
  if (!conn.ok()) {
    std::fprintf(stderr, "%s\n", conn.status().ToString().c_str());
    return 1;
  }
  auto client = nbd::adapters::BlockingClient::Connect(std::move(*conn), {},
                                                       absl::Seconds(10));
  if (!client.ok()) {
    std::fprintf(stderr, "%s\n", client.status().ToString().c_str());
    return 1;
  }
  std::vector<uint8_t> buf(4096);
  absl::Status s =
      (*client)->Pread(absl::MakeSpan(buf), 0, {}, absl::Seconds(10));
  if (!s.ok()) {
    std::fprintf(stderr, "pread: %s\n", s.ToString().c_str());
    return 1;
  }
  size_t nonzero = 0;
  for (uint8_t b : buf) nonzero += b != 0;
  std::printf("%zu of %zu bytes are non-zero\n", nonzero, buf.size());
  // Bounded: a server that never closes costs at most 5 s.
  s = (*client)->Shutdown(0, absl::Seconds(5));
  return s.ok() ? 0 : 1;
}
