#include "render/job/resume.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <spdlog/spdlog.h>

#include <nlohmann/json.hpp>

#include <chrono>
#include <fstream>

#include "tessera/error.hpp"

namespace tessera::job {
namespace {

// Opens and checks a checkpoint for this render (rank 0): the whole file is
// read and checksummed, and its settings must be this render's.
std::unique_ptr<io::CheckpointReader> open_checkpoint(const std::filesystem::path& path,
                                                      const std::map<std::string, std::string>& settings) {
  auto reader = std::make_unique<io::CheckpointReader>(path);
  auto differences = io::settings_differences(reader->header().settings, settings);
  if (!differences.empty())
    fail("checkpoint '", path.string(), "' is from a different render and cannot continue this one (",
         fmt::format("{}", fmt::join(differences, "; ")),
         "): run with the settings it was written with, or without --resume");
  reader->verify();
  return reader;
}

}  // namespace

ResumePoint find_resume_point(const std::string& resume, const std::string& output,
                              const std::map<std::string, std::string>& settings, std::vector<std::string>& notes) {
  const auto started = std::chrono::steady_clock::now();
  ResumePoint point;
  if (resume.empty()) {
    if (auto stale = io::list_checkpoints(output); !stale.empty())
      notes.push_back(fmt::format("{} checkpoint(s) of an earlier render of {} (such as {}) will be replaced; "
                                  "--resume auto continues from them instead",
                                  stale.size(), output, stale.front().filename().string()));
    return point;
  }
  if (resume == "auto") {
    auto candidates = io::list_checkpoints(output);
    for (const auto& path : candidates) {
      std::unique_ptr<io::CheckpointReader> reader;
      try {
        reader = std::make_unique<io::CheckpointReader>(path);
      } catch (const Error& e) {
        spdlog::warn("skipping checkpoint {}: {}", path.string(), e.what());
        continue;
      }
      auto differences = io::settings_differences(reader->header().settings, settings);
      if (!differences.empty())
        fail("checkpoint '", path.string(), "' is from a different render (",
             fmt::format("{}", fmt::join(differences, "; ")),
             "): --resume auto will not continue it; move it away or render to another --output");
      try {
        reader->verify();
      } catch (const Error& e) {
        spdlog::warn("skipping checkpoint {}: {}", path.string(), e.what());
        continue;
      }
      point.reader = std::move(reader);
      break;
    }
    if (!point.reader) {
      notes.push_back(candidates.empty()
                          ? fmt::format("--resume auto: no checkpoint of {} yet; starting from the beginning", output)
                          : fmt::format("--resume auto: no usable checkpoint of {}; starting from the beginning",
                                        output));
      return point;
    }
  } else {
    try {
      point.reader = open_checkpoint(resume, settings);
    } catch (const Error& e) {
      fail("cannot resume: ", e.what());
    }
  }
  const auto& header = point.reader->header();
  point.resumed = true;
  point.scale = header.scale;
  point.state = header.state;
  notes.push_back(fmt::format("resuming from {}: scale {} of {}, {} iterations done (written {} by {} rank(s), {} tiles; "
                              "checked in {:.1f} s)",
                              point.reader->path().string(), header.scale + 1, header.scale_count,
                              header.state.iterations_done, header.written_at, header.ranks, header.tiles,
                              std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count()));
  return point;
}

void keep_log_until(const std::string& path, int scale, int iteration) {
  std::ifstream in(path);
  if (!in) return;  // no log yet: the resumed render starts one
  std::string kept, line;
  while (std::getline(in, line)) {
    const auto record = nlohmann::json::parse(line, nullptr, false);
    if (record.is_discarded() || !record.contains("iteration")) continue;
    const int line_scale = record.value("scale", 1), line_iteration = record["iteration"].get<int>();
    if (line_scale < scale || (line_scale == scale && line_iteration <= iteration)) kept += line + "\n";
  }
  in.close();
  const std::string temporary = path + ".resume-tmp";
  {
    std::ofstream out(temporary, std::ios::trunc);
    out << kept;
    if (!out.flush()) fail("cannot rewrite the JSON log '", path, "' for the resumed render");
  }
  std::error_code error;
  std::filesystem::rename(temporary, path, error);
  if (error) fail("cannot rewrite the JSON log '", path, "': ", error.message());
}

int remove_checkpoints(const std::string& output, const std::function<bool(const std::filesystem::path&)>& keep) {
  int removed = 0;
  for (const auto& old : io::list_checkpoints(output)) {
    std::error_code error;
    if (!keep(old) && std::filesystem::remove(old, error)) ++removed;
  }
  io::remove_abandoned_checkpoint_files(output);
  return removed;
}

}  // namespace tessera::job
