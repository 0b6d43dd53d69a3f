#include "tools/nbd/usage.h"

namespace nbd::tool {

const char kMainUsage[] =
    "usage: nbd [--timeout SECONDS] [--debug] [--help] COMMAND ARGS...\n"
    "commands:\n"
    "  info URI [--json] [--list]    show an export (or list the exports)\n"
    "  map URI [--json]              show allocation extents\n"
    "  copy SRC DST [options]        copy one export to another\n"
    "  bench URI [options]           measure an adapter against a server\n"
    "  serve (--memory SIZE | --file PATH | --null SIZE)\n"
    "        (--socket PATH | --port N) [--read-only] [--name NAME]\n"
    "        [--max-connections N] [--handshake-timeout SECONDS]\n"
    "        [--max-queued-replies SIZE]\n"
    "                                run the embedded NBD server\n"
    "  demo                          embedded server + every adapter\n"
    "global options (anywhere): --timeout SECONDS (default 30), --debug,\n"
    "  --help\n";

const char kShortUsage[] =
    "usage: nbd [--timeout SECONDS] [--debug] COMMAND ARGS... "
    "(commands: info, map, copy, bench, serve, demo; see nbd --help)\n";

namespace {

const char kInfoUsage[] = "usage: nbd info URI [--json] [--list]\n";
const char kMapUsage[] = "usage: nbd map URI [--json]\n";
const char kServeUsage[] =
    "usage: nbd serve (--memory SIZE | --file PATH | --null SIZE)\n"
    "                 (--socket PATH | --port N) [--read-only] [--name "
    "NAME]\n"
    "                 [--max-connections N] [--handshake-timeout SECONDS]\n"
    "                 [--max-queued-replies SIZE]\n"
    "                 [--tls=off|on|require (--tls-certificates DIR |\n"
    "                  --tls-psk FILE) [--tls-verify-peer]]\n"
    "  SIZE: bytes, or with a suffix K, M, G, T (1M = 1048576)\n"
    "  --max-connections: open connections at most; more are closed at\n"
    "    once (default 1024, lowered to fit the open-file limit)\n"
    "  --handshake-timeout: drop a client not done negotiating after this\n"
    "    long (default 10; 0: never)\n"
    "  --max-queued-replies: stop reading from a client whose unsent\n"
    "    replies exceed SIZE until they drain (default 16M)\n"
    "  --tls: offer TLS (on) or insist on it (require), as nbdkit does;\n"
    "    DIR holds server-cert.pem, server-key.pem (and ca-cert.pem for\n"
    "    --tls-verify-peer, which requires client certificates); FILE is a\n"
    "    psktool key file (username:hexkey lines)\n"
    "  with --debug, each connection's protocol trace goes to stderr\n";
const char kDemoUsage[] = "usage: nbd demo [--size SIZE]\n";
const char kCopyUsage[] =
    "usage: nbd copy SRC DST [--connections N] [--requests N]\n"
    "                [--request-size SIZE] [--adapter "
    "blocking|epoll|io_uring]\n"
    "                [--flush] [--progress]\n"
    "  SRC: NBD URI, file or - (stdin); DST: NBD URI, file, - (stdout) or "
    "null:\n";
const char kBenchUsage[] =
    "usage: nbd bench URI [--op read|write] [--bs SIZE] [--qd N]\n"
    "                 [--seconds S] [--connections N] [--random]\n"
    "                 [--adapter blocking|epoll|io_uring] [--json]\n"
    "  --qd: requests in flight per connection (default 16); --bs default "
    "4K;\n"
    "  --seconds default 10; offsets are sequential unless --random\n";

}  // namespace

const char* UsageFor(absl::string_view command) {
  if (command == "info") return kInfoUsage;
  if (command == "map") return kMapUsage;
  if (command == "serve") return kServeUsage;
  if (command == "demo") return kDemoUsage;
  if (command == "copy") return kCopyUsage;
  if (command == "bench") return kBenchUsage;
  return kMainUsage;
}

}  // namespace nbd::tool
