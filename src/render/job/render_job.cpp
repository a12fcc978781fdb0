// The render job: scales, one Renderer each, with checkpoints, intermediate
// images, the JSON log and the output written on the way.
#include "tessera/render_job.hpp"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <memory>

#include "comm/device_communicator.hpp"
#include "render/job/agreement.hpp"
#include "render/job/job_inputs.hpp"
#include "render/job/job_log.hpp"
#include "render/job/job_plan.hpp"
#include "render/job/render_record.hpp"
#include "render/job/resume.hpp"
#include "render/job/tile_choice.hpp"
#include "render/job/upsample.hpp"
#include "tessera/backend.hpp"
#include "tessera/error.hpp"
#include "tessera/io/checkpoint.hpp"
#include "tessera/io/image_io.hpp"
#include "tessera/model.hpp"
#include "tessera/tiling.hpp"

namespace tessera {
namespace job {
namespace {

// From about this size a scale's set-up takes long enough to be worth a line.
constexpr double kLargeSetUpPixels = 1e6;

// A scale whose loss has barely moved after its first iterations is not
// styling the image: said once, with what to try, and marked in the log.
constexpr int kStallIterations = 20;
constexpr double kStallFraction = 0.9;

// OUTPUT_NNNN.ext, or OUTPUT_sS_NNNN.ext when the render has several scales.
std::string intermediate_name(const std::string& output, int scale, int scale_count, int iteration) {
  std::filesystem::path path(output);
  std::string tag = scale_count > 1 ? fmt::format("_s{}_{:04}", scale + 1, iteration) : fmt::format("_{:04}", iteration);
  return (path.parent_path() / (path.stem().string() + tag + path.extension().string())).string();
}

class Job {
 public:
  Job(JobPlan plan, Communicator& communicator, const JobHooks& hooks)
      : plan_(std::move(plan)), o_(plan_.request), world_(communicator), hooks_(hooks),
        root_(communicator.rank() == 0) {}

  JobOutcome run();

 private:
  enum class ScaleEnd { next, last, interrupted };

  // Rank 0 finds the checkpoint to continue from; the other ranks learn its
  // scale and the optimiser's scalars (the vectors come through
  // Renderer::restore).
  void agree_on_resume_point();
  ScaleEnd run_scale(int s);
  // Scale s's settings: its iterations and tiles (and notes on the tiles).
  RenderSettings settings_of_scale(int s, std::vector<std::string>& notes) const;
  // A collective call: every rank hands over its part; rank 0 writes. A
  // failure to write is a warning (the render goes on, the previous
  // checkpoint stays); the seconds and bytes are returned for the log.
  void write_checkpoint(const Renderer& renderer, int s, const RenderSettings& scale_settings, double& seconds,
                        std::uintmax_t& bytes);
  const Scale& scale(int s) const { return scales_[s]; }
  int scale_count() const { return int(scales_.size()); }

  JobPlan plan_;
  const RenderRequest& o_;
  // The ranks' communicator: the process's (MPI) until the backend is made,
  // then NCCL's where that backend is a GPU's and each rank has its own.
  Communicator& communicator() const { return device_communicator_ ? *device_communicator_ : world_; }
  Communicator& world_;
  const JobHooks& hooks_;
  const bool root_;
  SourceImages sources_;
  std::vector<Scale> scales_;
  Record identity_;  // rank 0
  ResumePoint point_;
  std::unique_ptr<Backend> backend_;
  std::unique_ptr<Communicator> device_communicator_;
  // What --tiles auto may plan for on the GPU (bytes; 0 on the CPU),
  // measured before the render allocates anything.
  double device_budget_ = 0.0;
  IterationLog log_;
  // Set once the first iteration is near: from then on signals stop the
  // render after an iteration instead of ending the process.
  bool listening_ = false;
  // Checkpoints this run has written or resumed from, oldest first: after a
  // new one is in place only it and the one before it are kept.
  std::vector<std::filesystem::path> kept_;
  // This rank's part of the previous scale's result, upsampled: where the
  // next scale starts (RenderInputs::local_start).
  std::vector<float> carried_;
  int done_ = 0;
};

JobOutcome Job::run() {
  auto& notes = plan_.notes;
  sources_ = read_sources(plan_, communicator(), notes);
  scales_ = plan_scales(o_.scales, sources_.width, sources_.height, o_.iterations, o_.scale_iterations);
  if (plan_.request.precision == "auto") {
    // Settled before anything records it (checkpoints, the image's
    // metadata, the memory estimate).
    const Precision chosen = choose_precision("auto", o_.backend, sources_.width, sources_.height);
    plan_.request.precision = precision_name(chosen);
    if (chosen == Precision::bf16)
      notes.push_back("bf16 activations, the GPU's default from 4K (--precision f32 for the reference)");
  }
  if (root_) {
    identity_ = resume_identity(plan_, sources_.width, sources_.height, scales_);
    point_ = find_resume_point(o_.resume, o_.output, identity_, notes);
  }
  agree_on_resume_point();
  if (o_.dry_run) {
    spdlog::info("weights {} ({} up to {})", plan_.weights_path.string(), plan_.model, plan_.deepest);
    for (const auto& note : notes) spdlog::info("{}", note);
  }
  check_memory(o_, plan_.settings, scales_, communicator().size(), o_.dry_run);
  if (o_.dry_run) {
    spdlog::info("dry run: the inputs are good; nothing rendered");
    return JobOutcome::checked;
  }

  backend_ = make_backend(o_.backend);
  backend_->set_threads(o_.threads);
  backend_->set_precision(parse_precision(o_.precision));
  device_budget_ = device_memory_budget(*backend_, world_);
  std::string why_not_nccl;
  device_communicator_ = make_device_communicator(world_, *backend_, why_not_nccl);
  if (device_communicator_) spdlog::info("ranks' sums and halos: NCCL, one GPU per rank");
  else if (!why_not_nccl.empty()) spdlog::warn("{}", why_not_nccl);
  if (!o_.log_json.empty() && root_)
    log_ = IterationLog(o_.log_json, point_.resumed ? point_.scale + 1 : 0, point_.state.iterations_done);
  if (point_.reader) kept_.push_back(point_.reader->path());

  for (int s = point_.scale; s < scale_count(); ++s) {
    const ScaleEnd end = run_scale(s);
    if (end == ScaleEnd::interrupted) return JobOutcome::interrupted;
    if (end == ScaleEnd::last) break;
  }
  spdlog::info("wrote {}", o_.output);
  // A finished render needs its checkpoints no more, and a later render of
  // this output with other settings would find them in its way.
  if (root_ && !o_.keep_checkpoints) {
    const int removed = remove_checkpoints(o_.output, [](const std::filesystem::path&) { return false; });
    if (removed > 0)
      spdlog::info("removed {} checkpoint{} (--keep-checkpoints keeps them)", removed, removed > 1 ? "s" : "");
  }
  return JobOutcome::finished;
}

void Job::agree_on_resume_point() {
  std::string text = root_ && point_.resumed ? std::to_string(point_.scale) + "\n" + io::render_state_text(point_.state)
                                             : std::string();
  communicator().broadcast(text);
  if (!root_ && !text.empty()) {
    point_.resumed = true;
    point_.scale = std::stoi(text.substr(0, text.find('\n')));
    point_.state = io::parse_render_state(text.substr(text.find('\n') + 1));
  }
}

Job::ScaleEnd Job::run_scale(int s) {
  const Scale& here = scale(s);
  const auto scale_started = std::chrono::steady_clock::now();
  const bool resuming_here = point_.resumed && s == point_.scale;
  std::vector<std::string> scale_notes;
  RenderSettings scale_settings = settings_of_scale(s, scale_notes);
  if (resuming_here) {
    scale_settings.init = InitKind::content;  // replaced by the checkpoint's image
  } else if (s > point_.scale || point_.resumed) {
    scale_settings.init = InitKind::given;
  } else {
    scale_settings.init = plan_.first_init;
  }
  RenderInputs inputs = scale_inputs(plan_, sources_, here, scale_settings.init, communicator());
  if (scale_settings.init == InitKind::given) inputs.local_start = std::move(carried_);
  carried_ = {};

  // What this scale is, said before its set-up (targets, networks,
  // buffers), which takes tens of seconds at poster sizes.
  if (s == point_.scale)
    for (const auto& note : plan_.notes) spdlog::info("{}", note);
  for (const auto& note : scale_notes) spdlog::info("{}", note);
  const std::string& model = plan_.model;
  const std::string weights_name = plan_.weights_path.filename().string();
  std::string layout =
      communicator().size() > 1 || scale_settings.tile_rows * scale_settings.tile_columns > 1
          ? fmt::format(", {} rank(s), {}x{} tiles, halo {} px", communicator().size(), scale_settings.tile_rows,
                        scale_settings.tile_columns,
                        render_halo_for(architecture(model), scale_settings.objective.layers(), scale_settings.halo_px))
          : std::string();
  if (scale_count() > 1)
    spdlog::info("scale {} of {}: {}x{}, {} iterations of {}{}", s + 1, scale_count(), here.width, here.height,
                 here.iterations, o_.optimizer, layout);
  else
    spdlog::info("rendering {}x{} with {} ({}), {} iterations of {}, on {}{}", sources_.width, sources_.height, model,
                 weights_name, here.iterations, o_.optimizer, backend_->describe().front(), layout);
  if (s == point_.scale && scale_count() > 1)
    spdlog::info("with {} ({}) on {}", model, weights_name, backend_->describe().front());
  if (double(here.width) * here.height >= kLargeSetUpPixels)
    spdlog::info("setting up: style targets, content features, networks and buffers{}",
                 listening_ ? "" : " (Ctrl-C stops at once: nothing is rendered yet)");

  std::string halo_error;
  if (plan_.settings.halo_px >= 0 && root_)
    halo_error = measure_halo_error(*backend_, scale_settings, plan_.weights, inputs);
  Renderer renderer(*backend_, communicator(), scale_settings, std::move(inputs));
  if (!halo_error.empty()) spdlog::info("{}", halo_error);
  if (s == scale_count() - 1) plan_.weights = WeightSet{};  // the backend holds its own copy now
  const int resumed_at = resuming_here ? point_.state.iterations_done : 0;
  if (resuming_here) {
    renderer.restore(point_.state, [&](const std::string& name) { return point_.reader->read(name); });
    point_.reader.reset();
  }

  const Record metadata = image_metadata(plan_, scales_, s, scale_settings);
  auto write = [&](const std::string& path, int iterations_done) {
    io::WriteOptions write_options;
    write_options.bits = o_.bits;
    write_options.metadata = metadata;
    write_options.metadata["iterations"] = std::to_string(iterations_done);
    // In strips of about 64 MiB of floats: rank 0 never holds the whole
    // image. Every rank takes part; rank 0 writes.
    const int strip_rows = std::max(1, int((std::size_t(64) << 20) / (3 * sizeof(float) * std::size_t(renderer.width()))));
    std::unique_ptr<io::ImageStripWriter> writer;
    if (root_) writer = std::make_unique<io::ImageStripWriter>(path, renderer.width(), renderer.height(), write_options);
    renderer.image_strips(strip_rows, [&](const Image& strip) { writer->write_rows(strip); });
    if (root_) writer->finish();
  };

  double loop_seconds = 0.0;
  // Set only from a value every rank agreed on: what each rank does after
  // the loop (write the image and end, or go on to the next scale) holds
  // collectives that must match. A raw signal flag can change between the
  // last agreement and the end of the loop on one rank alone.
  bool stop_agreed = false;
  double first_loss = 0.0;
  const IterationPlace place{s + 1, scale_count(), here.width, here.height, communicator().size()};
  hooks_.iterating();
  listening_ = true;
  done_ = renderer.run([&](const IterationReport& r) {
    hooks_.progress(r);
    IterationExtras extras;
    if (r.iteration == 1) first_loss = r.losses.total();
    extras.stalled =
        r.iteration == kStallIterations && first_loss > 0.0 && r.losses.total() > kStallFraction * first_loss;
    if (extras.stalled) {
      hooks_.end_progress_line();
      spdlog::warn("the loss fell only from {:.4g} to {:.4g} in {} iterations: the render has stalled. {}", first_loss,
                   r.losses.total(), kStallIterations,
                   o_.optimizer == "adam" ? "Try a larger --learning-rate, or L-BFGS"
                   : o_.line_search == "none"
                       ? "neural-style's fixed L-BFGS steps stall on large images: use --line-search strong-wolfe"
                       : "Check the loss weights: --style-weight and --content-weight");
    }
    loop_seconds = r.seconds;
    auto io_start = std::chrono::steady_clock::now();
    if (o_.save_every > 0 && r.iteration % o_.save_every == 0 && r.iteration < r.iterations) {
      hooks_.end_progress_line();
      write(intermediate_name(o_.output, s, scale_count(), r.iteration), r.iteration);
    }
    extras.io_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - io_start).count();
    // Every rank takes the same decision, or the collectives would hang:
    // 2 stops (and checkpoints), 1 checkpoints and goes on.
    double request = hooks_.request();
    if (communicator().size() > 1) request = communicator().max(request);
    const bool periodic =
        o_.checkpoint_every > 0 && r.iteration % o_.checkpoint_every == 0 && r.iteration < r.iterations;
    if (request > 0.0 || periodic) {
      // Periodic checkpoints are quiet (the progress line stays as it is);
      // one asked for by SIGUSR1 says where it went.
      write_checkpoint(renderer, s, scale_settings, extras.checkpoint_seconds, extras.checkpoint_bytes);
      if (request == 1.0 && extras.checkpoint_bytes > 0 && !kept_.empty()) {
        hooks_.end_progress_line();
        spdlog::info("checkpoint after iteration {} (SIGUSR1): {}", r.iteration, kept_.back().string());
      }
    }
    log_.write(r, place, extras);
    stop_agreed = request >= 2.0;
    return !stop_agreed;
  });
  hooks_.end_progress_line();
  if (scale_count() > 1) {
    double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - scale_started).count();
    spdlog::info("scale {} of {}: {} iterations in {} ({} of it before the first iteration: targets, set-up){}", s + 1,
                 scale_count(), done_ - resumed_at, format_duration(seconds), format_duration(seconds - loop_seconds),
                 resumed_at > 0 ? fmt::format("; resumed after iteration {}", resumed_at) : "");
  }

  if (stop_agreed) {
    write(o_.output, done_);
    const std::string cause = hooks_.stop_cause();
    spdlog::warn("interrupted ({}) after {} of {} iterations{}; the image so far{} is in {}, and a checkpoint "
                 "next to it (--resume auto continues)",
                 cause, done_, here.iterations,
                 scale_count() > 1 ? fmt::format(" of scale {} of {}", s + 1, scale_count()) : "",
                 scale_count() > 1 ? fmt::format(" ({}x{})", here.width, here.height) : "", o_.output);
    return ScaleEnd::interrupted;
  }
  if (!renderer.stop_reason().empty()) {
    // Reaching a minimum early is news, not trouble; anything else is.
    const bool converged = renderer.converged();
    spdlog::log(converged ? spdlog::level::info : spdlog::level::warn, "{} after {} of {} iterations{}: {}",
                converged ? "finished" : "stopped", done_, here.iterations,
                scale_count() > 1 ? fmt::format(" of scale {}", s + 1) : "", renderer.stop_reason());
  }
  if (s + 1 == scale_count()) {
    write(o_.output, done_);
    return ScaleEnd::last;
  }
  if (o_.checkpoint_every > 0) {
    double seconds = 0.0;
    std::uintmax_t bytes = 0;
    write_checkpoint(renderer, s, scale_settings, seconds, bytes);
  }
  // The next scale starts from this one's result, upsampled in the
  // backbone's input domain (no round trip through RGB).
  std::vector<std::string> unused;
  const RenderSettings next = settings_of_scale(s + 1, unused);
  carried_ = upsample_for_next_scale(
      renderer, render_layout(next, scale(s + 1).width, scale(s + 1).height, communicator().size()), communicator());
  return ScaleEnd::next;
}

RenderSettings Job::settings_of_scale(int s, std::vector<std::string>& notes) const {
  RenderSettings settings = plan_.settings;
  settings.iterations = scale(s).iterations;
  choose_tiles(o_, settings, scale(s).width, scale(s).height, communicator().size(), notes,
               most_tensor_elements(backend_->name()), device_budget_);
  return settings;
}

void Job::write_checkpoint(const Renderer& renderer, int s, const RenderSettings& scale_settings, double& seconds,
                           std::uintmax_t& bytes) {
  auto start = std::chrono::steady_clock::now();
  auto path = io::checkpoint_path(o_.output, s + 1, renderer.iterations_done());
  std::unique_ptr<io::CheckpointWriter> writer;
  std::string problem;
  if (root_) {
    io::CheckpointHeader header;
    header.settings = identity_;
    header.scale = s;
    header.scale_count = scale_count();
    header.width = scale(s).width;
    header.height = scale(s).height;
    header.state = renderer.state();
    header.ranks = communicator().size();
    header.tiles = fmt::format("{}x{}", scale_settings.tile_rows, scale_settings.tile_columns);
    try {
      writer = std::make_unique<io::CheckpointWriter>(path, header);
    } catch (const Error& e) {
      problem = e.what();
    }
  }
  renderer.save([&](const std::string& name, std::span<const float> whole) {
    if (!problem.empty()) return;
    try {
      writer->write(name, whole);
    } catch (const Error& e) {
      problem = e.what();
    }
  });
  if (!root_) return;
  if (problem.empty()) {
    try {
      bytes = writer->commit();
    } catch (const Error& e) {
      problem = e.what();
    }
  }
  writer.reset();
  seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (!problem.empty()) {
    hooks_.end_progress_line();
    spdlog::warn("checkpoint not written ({}); the previous one is kept", problem);
    return;
  }
  if (kept_.empty() || kept_.back() != path) kept_.push_back(path);
  // Keep this checkpoint and the one before it; earlier ones (also those
  // of an earlier render of this output) go.
  remove_checkpoints(o_.output, [&](const std::filesystem::path& old) {
    return old == kept_.back() || (kept_.size() > 1 && old == kept_[kept_.size() - 2]);
  });
  spdlog::debug("checkpoint {} ({:.1f} MB, {:.2f} s)", path.string(), bytes / 1e6, seconds);
}

}  // namespace
}  // namespace job

JobOutcome run_render_job(const RenderRequest& request, Communicator& communicator, const JobHooks& hooks) {
  // Every rank checks the request alike; a mistake is said once, by the
  // lowest rank that found it, not once per rank.
  job::JobPlan plan = job::agreed(communicator, [&] { return job::plan_job(request, communicator.rank() == 0); });
  job::Job job(std::move(plan), communicator, hooks);
  return job.run();
}

}  // namespace tessera
