#include "render/job/job_log.hpp"

#include <fmt/format.h>

#include <nlohmann/json.hpp>

#include <cmath>

#include "render/job/resume.hpp"
#include "tessera/error.hpp"

namespace tessera::job {

std::string format_duration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  long s = std::lround(seconds);
  if (s < 60) return fmt::format("{}s", s);
  if (s < 3600) return fmt::format("{}m{:02}s", s / 60, s % 60);
  return fmt::format("{}h{:02}m", s / 3600, (s % 3600) / 60);
}

IterationLog::IterationLog(const std::string& path, int resumed_scale, int resumed_iteration) {
  const bool resumed = resumed_scale > 0;
  if (resumed) keep_log_until(path, resumed_scale, resumed_iteration);
  out_.open(path, resumed ? std::ios::app : std::ios::trunc);
  if (!out_) fail("cannot write the JSON log '", path, "'");
}

void IterationLog::write(const IterationReport& r, const IterationPlace& place, const IterationExtras& extras) {
  if (!out_.is_open()) return;
  nlohmann::json line = {{"iteration", r.iteration},
                         {"loss", r.losses.total()},
                         {"content_loss", r.losses.content},
                         {"style_loss", r.losses.style},
                         {"tv_loss", r.losses.tv},
                         {"style_loss_per_layer", r.losses.style_per_layer},
                         {"evaluations", r.evaluations},
                         {"seconds", r.seconds},
                         {"seconds_this_iteration", r.seconds_this_iteration},
                         {"compute_seconds", r.times.compute},
                         {"halo_seconds", r.times.halo},
                         {"allreduce_seconds", r.times.allreduce},
                         {"io_seconds", extras.io_seconds},
                         {"collectives", r.communication.collectives},
                         {"collective_bytes", r.communication.collective_bytes},
                         {"collective_seconds", r.communication.collective_seconds},
                         {"messages", r.communication.messages},
                         {"message_bytes", r.communication.message_bytes},
                         {"ranks", place.ranks},
                         {"scale", place.scale},
                         {"scales", place.scales},
                         {"width", place.width},
                         {"height", place.height}};
  if (!r.search_losses.empty()) line["search_losses"] = r.search_losses;
  if (extras.stalled) line["stalled"] = true;
  if (extras.checkpoint_bytes > 0) {
    line["checkpoint_seconds"] = extras.checkpoint_seconds;
    line["checkpoint_bytes"] = extras.checkpoint_bytes;
  }
  out_ << line.dump() << '\n';
  out_.flush();
}

}  // namespace tessera::job
