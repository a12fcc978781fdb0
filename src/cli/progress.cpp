#include "cli/progress.hpp"

#include <fmt/format.h>
#include <unistd.h>

#include <cmath>

#include "render/job/job_log.hpp"

namespace tessera::cli {

using job::format_duration;

Progress::Progress(std::FILE* stream, int print_every, bool quiet)
    : stream_(stream), print_every_(print_every), quiet_(quiet), terminal_(isatty(fileno(stream)) != 0) {}

void Progress::update(const IterationReport& r) {
  if (quiet_) return;
  // A resumed render starts past iteration 1: its rate counts only the
  // iterations this run did.
  if (first_iteration_ < 0) first_iteration_ = r.iteration;
  const int done_here = r.iteration - first_iteration_ + 1;
  double per_minute = r.seconds > 0 ? 60.0 * done_here / r.seconds : 0.0;
  double left = per_minute > 0 ? (r.iterations - r.iteration) * 60.0 / per_minute : 0.0;
  std::string losses = fmt::format("loss {:.4g} (content {:.4g}, style {:.4g}, tv {:.4g})", r.losses.total(),
                                   r.losses.content, r.losses.style, r.losses.tv);
  if (terminal_) {
    constexpr int width = 24;
    int filled = r.iterations > 0 ? int(double(width) * r.iteration / r.iterations) : width;
    fmt::print(stream_, "\r\033[K[{}{}] {}/{} {} {:.1f} it/min, {} left", std::string(filled, '#'),
               std::string(width - filled, '.'), r.iteration, r.iterations, losses, per_minute,
               format_duration(left));
    std::fflush(stream_);
    drawn_ = true;
    return;
  }
  bool due = (print_every_ > 0 && r.iteration % print_every_ == 0) || r.iteration == 1 ||
             r.iteration == r.iterations;
  if (!due) return;
  fmt::print(stream_, "iteration {}/{}: {}, {:.1f} it/min, {} left\n", r.iteration, r.iterations, losses,
             per_minute, format_duration(left));
  std::fflush(stream_);
}

void Progress::finish() {
  if (drawn_) {
    fmt::print(stream_, "\n");
    drawn_ = false;
  }
}

}  // namespace tessera::cli
