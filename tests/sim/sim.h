// A deterministic simulation of NBD connections: nbd::Client and
// nbd::ServerSession pairs (adapters/testing/in_memory_pair.h) sharing one
// MemoryBackend, driven by a seeded generator, checked against a model.
//
// From the seed alone (std::mt19937_64, reduced with %, so the same on every
// run and machine with the same standard library) it picks the
// configuration (1-4 connections; per connection structured replies,
// extended headers, base:allocation, block sizes and payload limits asked
// for; the export's size, capabilities and block sizes; the server's
// in-flight and output limits, traces, ReplySent) and then a few hundred
// to a few thousand actions: issue a command (every type, with the flags
// the export allows, random sizes and alignments, random tags), send or
// deliver some bytes in some split (whole, N bytes, one byte, copying or
// zero-copy), pop events, execute a held request (any of them, so replies
// are delayed and reordered) normally or with a backend error (errno
// values the spec names, ESHUTDOWN, unknown ones; READs failing part-way),
// cut a stream at a random offset with EOF or a transport error,
// Disconnect() or Shutdown() with and without kShutdownAbandonPending. At
// the end every live connection is shut down and everything is run until
// both sides have ended.
//
// The oracle:
//  - every accepted command completes exactly once, with its tag, before
//    ClientClosed/ClientDead, which is the last event; refused calls
//    produce no events; valid commands are accepted while the connection
//    is up and refused after a disconnect;
//  - the server sees each command once, as issued (type, flags, offset,
//    length, WRITE payload), and never one that Shutdown withdrew;
//  - a command completes OK only if the server executed it without a
//    fault, with the injected errno (as the spec maps it) if it got one,
//    and ENOTCONN only if the connection ended or Shutdown withdrew it;
//  - READ data equals the model of the export at the moment the server
//    executed the READ (the simulation decides that order, so the model is
//    exact even with commands in flight and several connections); chunks
//    tile the request; zero extents of BLOCK_STATUS read as zeros;
//  - how each side ended follows from the streams alone: independent
//    decoders of both byte streams (wire_observer.h) say whether the EOF a
//    side got was at a message boundary (closed) or inside a message
//    (dead); a transport error kills; without a cut both sides close;
//  - the cores' own contracts: no anomalies (InMemoryPair::anomalies()),
//    nothing in flight and nothing to send once ended, no framing
//    violations on the wire.
#ifndef NBD_TESTS_SIM_SIM_H_
#define NBD_TESTS_SIM_SIM_H_

#include <cstdint>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include "adapters/testing/in_memory_pair.h"

namespace nbd::sim {

struct SimOptions {
  uint64_t seed = 1;
  // Log every action and event to `log` (std::cerr if null).
  bool verbose = false;
  std::ostream* log = nullptr;
};

// A fixed scenario instead of a random one: one connection issues a fixed
// set of commands (every type, data and holes, a READ failing part-way),
// every byte delivered whole; the stream `cut` is cut at `offset` with EOF
// or (`transport_error`) ECONNRESET. UINT64_MAX cuts nothing: the
// reference run. For proving the oracle at every point of every message.
struct CutScenario {
  bool structured = true;
  bool extended = true;
  Stream cut = Stream::kServerToClient;
  uint64_t offset = UINT64_MAX;
  bool transport_error = false;
};

struct SimResult {
  bool ok = true;
  std::string failure;  // the first failure, with the state around it

  // What happened (for the long-run summary).
  uint64_t connections = 0;
  uint64_t actions = 0;
  uint64_t commands = 0;
  uint64_t completed_ok = 0;
  uint64_t completed_error = 0;
  uint64_t backend_faults = 0;
  uint64_t cuts = 0;
  uint64_t closed = 0;  // client ends
  uint64_t dead = 0;
  // SimulateCut() only: the streams' sizes and message ends (for choosing
  // the cut points of the next runs).
  uint64_t bytes_c2s = 0;
  uint64_t bytes_s2c = 0;
  std::vector<uint64_t> c2s_message_ends;
  std::vector<uint64_t> s2c_message_ends;
};

SimResult Simulate(const SimOptions& options);
SimResult SimulateCut(const CutScenario& scenario,
                      const SimOptions& options = {});

// The command that replays `seed` with the full log.
std::string ReproCommand(uint64_t seed);

}  // namespace nbd::sim

#endif  // NBD_TESTS_SIM_SIM_H_
