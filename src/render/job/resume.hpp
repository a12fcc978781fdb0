// Continuing a render: the checkpoint it resumes from, chosen, checked and
// agreed on; the JSON log cut back to it; old checkpoints removed.
#pragma once

#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "tessera/io/checkpoint.hpp"
#include "tessera/render_state.hpp"

namespace tessera::job {

// Where a render continues from.
struct ResumePoint {
  std::unique_ptr<io::CheckpointReader> reader;  // rank 0 only
  int scale = 0;
  RenderState state;
  bool resumed = false;
};

// Rank 0: the checkpoint `resume` names (a file, "auto": the newest usable
// one of `output`, or "": none), read whole, checksummed, and checked to be
// of a render with these `settings` (the resume identity). What was found is
// added to `notes`. Throws tessera::Error on a checkpoint of another render.
ResumePoint find_resume_point(const std::string& resume, const std::string& output,
                              const std::map<std::string, std::string>& settings, std::vector<std::string>& notes);

// A resumed render logs again the iterations that ran after its checkpoint
// (a job killed between two checkpoints): the log keeps only the lines up to
// iteration `iteration` of scale `scale` (1-based, as logged), so that each
// iteration appears once. A line cut short by the kill goes too.
void keep_log_until(const std::string& path, int scale, int iteration);

// Removes the checkpoints of `output` that `keep` does not want, and any
// left half-written; returns how many checkpoints went.
int remove_checkpoints(const std::string& output, const std::function<bool(const std::filesystem::path&)>& keep);

}  // namespace tessera::job
