// A render job: what `tessera render` does once its options are read. It
// checks the request, reads the images, plans the scales and tiles, continues
// from a checkpoint where asked, runs each scale (the next starting from the
// previous one's result, upsampled), writes checkpoints, the JSON log and the
// image with its metadata. The caller (the command line) parses the options,
// listens for signals and shows progress, through JobHooks.
#pragma once

#include <cstdint>
#include <functional>
#include <set>
#include <string>
#include <vector>

#include "tessera/communicator.hpp"
#include "tessera/render.hpp"

namespace tessera {

// A render as the user asked for it, not yet checked: neural-style's options
// in tessera's spelling. `given` names the options the user set (on the
// command line or in a config file), which a weights file's recommended
// loss weights do not override.
struct RenderRequest {
  std::string content;
  std::vector<std::string> styles;
  std::vector<float> style_blend_weights;
  std::string output = "out.png";
  std::string size = "512";
  std::string fit = "crop";
  float style_scale = 1.0f;
  std::string model;
  std::string weights;
  std::string proto_file;
  std::vector<std::string> content_layers;
  std::vector<std::string> style_layers;
  float content_weight = 5.0f;
  float style_weight = 100.0f;
  float tv_weight = 1e-3f;
  std::string init = "random";  // random, content, or an image file
  std::string optimizer = "lbfgs";
  float learning_rate = 10.0f;
  int lbfgs_history = 100;
  std::string line_search = "strong-wolfe";
  bool normalize_gradients = false;
  int iterations = 1000;
  std::uint64_t seed = 0;
  bool original_colors = false;
  std::string pooling = "max";
  int save_every = 0;
  int checkpoint_every = 0;
  bool keep_checkpoints = false;
  std::string resume;
  std::string scales = "auto";
  std::vector<int> scale_iterations;
  std::string backend = "auto";
  std::string precision = "auto";
  std::string tiles = "auto";
  std::string halo = "exact";
  std::string memory_per_rank;
  int threads = 1;  // CPU threads per rank, already chosen
  std::string log_json;
  int bits = 0;
  bool dry_run = false;
  std::set<std::string> given;  // "--style-weight", ...

  bool was_given(const std::string& option) const { return given.count(option) > 0; }
};

// What the job asks of its caller while it runs.
struct JobHooks {
  // Before each scale's first iteration (progress starts afresh). From the
  // first call on, a stop request ends the render after an iteration, with
  // a checkpoint and the image so far; before it nothing is lost by ending
  // the process at once.
  std::function<void()> iterating = [] {};
  // This rank's wish after an iteration: 0 go on, 1 write a checkpoint and
  // go on, 2 stop. The ranks agree on the largest.
  std::function<int()> request = [] { return 0; };
  // What stopped the render (for the message), e.g. "SIGINT".
  std::function<std::string()> stop_cause = [] { return std::string("a stop request"); };
  // Each iteration's report (rank 0 shows progress), and the end of a
  // progress line before any other message.
  std::function<void(const IterationReport&)> progress = [](const IterationReport&) {};
  std::function<void()> end_progress_line = [] {};
};

enum class JobOutcome { finished, checked, interrupted };

// Runs the render on every rank of `communicator` (a collective call). A
// mistake in the request throws tessera::Error on every rank (said by the
// lowest rank that found it; see AgreedFailure).
JobOutcome run_render_job(const RenderRequest& request, Communicator& communicator, const JobHooks& hooks);

}  // namespace tessera
