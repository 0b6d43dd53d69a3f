// Embedding NBD connections in an io_uring loop the program already owns.
// The ring also carries the application's own operations (here a timeout
// SQE with its own user_data); the driver recognises its completions by
// UringDriver::Owns(). Two connections share the ring; each reads 16
// blocks, all in flight, then disconnects with a bounded wait.
#include <liburing.h>

#include <cstdio>
#include <vector>

#include "absl/time/clock.h"
#include "adapters/connect/connect.h"
#include "adapters/io_uring/uring_driver.h"

namespace {

constexpr uint64_t kMyTimer = 42;  // the application's user_data

struct Job {
  nbd::adapters::UringConnection* conn = nullptr;
  std::vector<std::vector<uint8_t>> blocks =
      std::vector<std::vector<uint8_t>>(16, std::vector<uint8_t>(4096));
  bool connected = false;
  bool issued = false;
  bool disconnecting = false;
  int completed = 0;
};

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s NBD-URI\n", argv[0]);
    return 2;
  }
  io_uring ring;
  if (io_uring_queue_init(64, &ring, 0) < 0) return 1;
  nbd::adapters::SyscallCounters counters;
  Job jobs[2];
  {
    // The driver must be destroyed before the ring: it reaps its own
    // in-flight operations on the way out.
    nbd::adapters::UringDriver driver(&ring, &counters);
    for (Job& job : jobs) {
      auto conn = nbd::adapters::ConnectUri(argv[1]);
      if (!conn.ok()) {
        std::fprintf(stderr, "%s\n", conn.status().ToString().c_str());
        return 1;
      }
      nbd::ClientOptions options;
      options.export_name = conn->export_name;
      job.conn = driver.Add(conn->fd, options, [&job](nbd::ClientEvent& e) {
        if (std::holds_alternative<nbd::Connected>(e)) job.connected = true;
        if (std::holds_alternative<nbd::CommandCompleted>(e)) ++job.completed;
      });
    }

    // The application's own periodic operation.
    __kernel_timespec tick = {0, 100 * 1000 * 1000};
    bool timer_armed = false;
    int ticks = 0;
    auto all_finished = [&] {
      return jobs[0].conn->finished() && jobs[1].conn->finished();
    };
    while (!all_finished()) {
      if (!timer_armed) {
        io_uring_sqe* sqe = io_uring_get_sqe(&ring);
        io_uring_prep_timeout(sqe, &tick, 0, 0);
        io_uring_sqe_set_data64(sqe, kMyTimer);
        timer_armed = true;
      }
      // [START uring_iteration]
      driver.Prepare();  // SQEs for every connection, batched
      ++counters.io_uring_enter;
      // One syscall per iteration; no waiting if a TLS connection already
      // moved bytes inside Prepare().
      io_uring_submit_and_wait(&ring, driver.moved_in_prepare() ? 0 : 1);
      unsigned head, seen = 0;
      io_uring_cqe* cqe;
      io_uring_for_each_cqe(&ring, head, cqe) {
        ++seen;
        if (nbd::adapters::UringDriver::Owns(cqe)) {
          driver.OnCompletion(cqe);
        } else if (cqe->user_data == kMyTimer) {
          timer_armed = false;
          ++ticks;
        }
      }
      io_uring_cq_advance(&ring, seen);
      driver.CheckDeadlines(absl::Now());
      // [END uring_iteration]

      for (Job& job : jobs) {
        nbd::Client& client = job.conn->client();
        if (job.connected && !job.issued) {
          job.issued = true;
          for (size_t i = 0; i < job.blocks.size(); ++i) {
            client.Read(i * 4096, absl::MakeSpan(job.blocks[i])).IgnoreError();
          }
        }
        if (job.issued && !job.disconnecting &&
            job.completed == static_cast<int>(job.blocks.size())) {
          job.disconnecting = true;
          job.conn->SetDeadline(absl::Now() + absl::Seconds(5));
          job.conn->Disconnect().IgnoreError();
        }
      }
    }
    std::printf("reads: %d + %d, io_uring_enter calls: %llu, ticks: %d\n",
                jobs[0].completed, jobs[1].completed,
                static_cast<unsigned long long>(counters.io_uring_enter),
                ticks);
  }
  io_uring_queue_exit(&ring);
  return 0;
}
