// `tessera render`: neural-style's options in kebab-case, a TOML config that
// says the same things, progress and signals; the render itself is a job
// (tessera/render_job.hpp).
#include <spdlog/spdlog.h>

#include <csignal>
#include <cstdlib>
#include <memory>
#include <optional>

#include "cli/commands.hpp"
#include "cli/config_file.hpp"
#include "cli/progress.hpp"
#include "cli/signals.hpp"
#include "cli/threads.hpp"
#include "render/job/agreement.hpp"
#include "tessera/error.hpp"
#include "tessera/render_job.hpp"

namespace tessera::cli {
namespace {

// The request, and what only the command line has: neural-style's forms of
// a few options, a config file, how progress is shown.
struct RenderOptions {
  RenderRequest request;
  std::string original_colors_value;  // as given: "" (the flag alone), 1, 0, true, false
  std::string init_image;
  int gpu = -1;
  int print_every = 50;
  int threads = 0;
  std::string config;
  bool quiet = false;
};

// The request the options make, after the config file (the command line
// wins) and neural-style's forms of some options.
RenderRequest read_request(CLI::App& command, RenderOptions& options) {
  // A config may hold Adam's rate for a render the command line switches
  // to L-BFGS; only a rate typed with L-BFGS is a mistake.
  const bool typed_learning_rate = command.get_option("--learning-rate")->count() > 0;
  if (!options.config.empty()) {
    if (!std::filesystem::is_regular_file(options.config))
      fail("--config: '", options.config, std::filesystem::exists(options.config) ? "' is not a file" : "' not found");
    apply_config_file(command, options.config);
  }
  RenderRequest request = options.request;
  for (const CLI::Option* option : command.get_options())
    if (option->count() > 0)
      for (const auto& name : option->get_lnames()) request.given.insert("--" + name);
  auto given = [&](const char* name) { return request.was_given(name); };

  if (given("--original-colors")) {
    const auto& v = options.original_colors_value;
    if (v.empty() || v == "1" || v == "true") request.original_colors = true;
    else if (v == "0" || v == "false") request.original_colors = false;
    else fail("--original-colors takes 1 or 0 (or nothing), got '", v, "'");
  }
  if (request.init == "image") {
    if (options.init_image.empty()) fail("--init image needs --init-image FILE");
    request.init = options.init_image;
  } else if (!options.init_image.empty()) {
    if (given("--init")) fail("--init-image goes with --init image, not --init ", request.init);
    request.init = options.init_image;
  }
  if (given("--gpu")) {
    if (given("--backend")) fail("--gpu and --backend both choose the device: give one");
    if (options.gpu > 0)
      fail("--gpu ", options.gpu, ": each rank uses one GPU, chosen by its local rank or CUDA_VISIBLE_DEVICES; "
           "use --gpu 0 (or --backend cuda) and set CUDA_VISIBLE_DEVICES=", options.gpu);
    request.backend = options.gpu < 0 ? "cpu" : "cuda";
  }
  if (request.optimizer == "lbfgs" && typed_learning_rate)
    fail("--learning-rate is Adam's (--optimizer adam): L-BFGS sizes its own steps");
  if (options.threads < 0)
    fail("--threads must be 0 (all the CPUs this process may use) or more, got ", options.threads);
  if (options.print_every < 1) fail("--print-every must be at least 1, got ", options.print_every);
  return request;
}

int run_render(CLI::App& command, RenderOptions& options) {
  Communicator& communicator = process_communicator();
  RenderRequest request = job::agreed(communicator, [&] { return read_request(command, options); });
  if (!request.dry_run) {
    const ThreadChoice threads = choose_threads(options.threads);
    request.threads = threads.threads;
    const char* wait_policy = std::getenv("OMP_WAIT_POLICY");
    spdlog::debug("{} threads: {}; OpenMP waits {}", threads.threads, threads.why,
                  wait_policy ? wait_policy : "as libgomp does by default");
  }

  // Until the first iteration a SIGINT or SIGTERM ends the process at once,
  // even in the middle of setting up a large render: there is nothing to
  // save yet. From then on it stops the render after the iteration the
  // ranks agree on, with a checkpoint and the image so far.
  std::optional<SignalListener> signals;
  std::optional<Progress> progress;
  const bool quiet = options.quiet || communicator.rank() != 0;
  JobHooks hooks;
  hooks.iterating = [&] {
    if (!signals) signals.emplace();
    progress.emplace(stderr, options.print_every, quiet);
  };
  hooks.request = [&] { return signals->stop_signal() != 0 ? 2 : signals->take_checkpoint_request() ? 1 : 0; };
  hooks.stop_cause = [&]() -> std::string {
    const int signal = signals->stop_signal();
    return signal == SIGINT ? "SIGINT" : signal == SIGTERM ? "SIGTERM" : "another rank";
  };
  hooks.progress = [&](const IterationReport& report) { progress->update(report); };
  hooks.end_progress_line = [&] {
    if (progress) progress->finish();
  };
  return run_render_job(request, communicator, hooks) == JobOutcome::interrupted ? kExitInterrupted : 0;
}

}  // namespace

Command add_render_command(CLI::App& app) {
  auto* command = app.add_subcommand("render", "Render an image in the style of others (Gatys et al.)");
  auto o = std::make_shared<RenderOptions>();
  command->add_option("--content,--content-image", o->request.content, "Content image (any format OpenImageIO reads)");
  command->add_option("--style,--style-image", o->request.styles, "Style image(s), comma separated")->delimiter(',');
  command->add_option("--style-blend-weights", o->request.style_blend_weights,
                      "Weights of the style images' Gram targets (normalised to sum to 1)")
      ->delimiter(',');
  command->add_option("-o,--output,--output-image", o->request.output, "Output image: .png .jpg .tif .exr")->capture_default_str();
  command->add_option("--size,--image-size", o->request.size,
                      "Output size: long side (512), WxH (1920x1080), hd, 4k, 8k, or print (24x36in@300dpi)")
      ->capture_default_str();
  command->add_option("--fit", o->request.fit,
                      "An output whose shape differs from the content's (WxH, hd, print sizes): crop (centred), pad "
                      "(black borders) or stretch; a long side alone keeps the content's shape")
      ->capture_default_str();
  command->add_option("--style-scale", o->request.style_scale, "Style image long side relative to the output's")
      ->capture_default_str();
  command->add_option("--model", o->request.model, "Backbone: vgg19, vgg16, nin (default: the weights file's)");
  command->add_option("--weights,--model-file", o->request.weights,
                      "Weights: an .h5 from 'tessera models import' or its name, or a .caffemodel or .pth "
                      "(imported on first use and cached)");
  command->add_option("--proto-file", o->request.proto_file,
                      "neural-style's deploy .prototxt: checks that the weights are the backbone it describes");
  command->add_option("--content-layers", o->request.content_layers, "Content layers (default relu4_2; NIN relu7)")
      ->delimiter(',');
  command->add_option("--style-layers", o->request.style_layers,
                      "Style layers (default relu1_1,relu2_1,relu3_1,relu4_1,relu5_1; NIN relu0,relu3,relu7,relu12)")
      ->delimiter(',');
  command->add_option("--content-weight", o->request.content_weight, "Content loss weight")->capture_default_str();
  command->add_option("--style-weight", o->request.style_weight, "Style loss weight (per layer)")->capture_default_str();
  command->add_option("--tv-weight", o->request.tv_weight, "Total variation weight")->capture_default_str();
  command->add_option("--init", o->request.init, "Start from: random, content, or an image file (or image, with --init-image)")
      ->capture_default_str();
  command->add_option("--init-image", o->init_image, "The image --init image starts from (neural-style's form)");
  command->add_option("--optimizer", o->request.optimizer, "lbfgs or adam")->capture_default_str();
  command->add_option("--learning-rate", o->request.learning_rate,
                      "Adam's learning rate, in grey levels (1/255 of the RGB range) per step")
      ->capture_default_str();
  command->add_option("--lbfgs-history,--lbfgs-num-correction", o->request.lbfgs_history, "L-BFGS history pairs")->capture_default_str();
  command->add_option("--line-search", o->request.line_search,
                      "L-BFGS step: strong-wolfe (searches each step; may evaluate more than once per iteration) "
                      "or none (neural-style's fixed steps, which stall on large images)")
      ->capture_default_str();
  command->add_flag("--normalize-gradients", o->request.normalize_gradients,
                    "neural-style's -normalize_gradients: each loss term's feature gradient divided by its L1 norm "
                    "(with L-BFGS, implies --line-search none unless given)");
  command->add_option("--iterations,--num-iterations", o->request.iterations,
                      "Iterations (one evaluation each); with --scales, those of the coarsest scale")
      ->capture_default_str();
  command->add_option("--scales", o->request.scales,
                      "Coarse to fine: auto (one scale up to 1024 px; larger outputs start at 513-1024 px, the long "
                      "side doubling), N scales (the long side halving from the output's), or long sides "
                      "512,1024,... (the output's size is the last); each starts from the one before, upsampled")
      ->capture_default_str();
  command->add_option("--scale-iterations", o->request.scale_iterations,
                      "Iterations of each scale, coarsest first (default: --iterations, then half at each finer scale)")
      ->delimiter(',');
  command->add_option("--seed", o->request.seed, "Random seed (random init)")->capture_default_str();
  command->add_option("--original-colors", o->original_colors_value,
                      "Keep the content's colours (luminance transfer); also --original-colors 1 or 0")
      ->expected(0, 1);
  command->add_option("--pooling", o->request.pooling, "max or avg")->capture_default_str();
  command->add_option("--print-every,--print-iter", o->print_every, "Progress line period when not on a terminal")
      ->capture_default_str();
  command->add_option("--save-every,--save-iter", o->request.save_every, "Write OUTPUT_NNNN.ext every N iterations (0: never)")
      ->capture_default_str();
  command->add_option("--checkpoint-every", o->request.checkpoint_every,
                      "Write a checkpoint (OUTPUT.ckpt-sS-iN.h5, the newest two kept) every N iterations and at the "
                      "end of each scale; 0: only on SIGINT, SIGTERM (which stop) and SIGUSR1 (which goes on)")
      ->capture_default_str();
  command->add_flag("--keep-checkpoints", o->request.keep_checkpoints,
                    "Keep the checkpoints when the render finishes (by default they are removed then)");
  command->add_option("--resume", o->request.resume,
                      "Continue from a checkpoint FILE, or 'auto': the newest usable one next to the output (none: "
                      "start from the beginning). Any rank or tile count; the other settings must match");
  command->add_option("--backend", o->request.backend, "cpu or auto")->capture_default_str();
  command->add_option("--gpu", o->gpu, "neural-style's -gpu: -1 for the CPU, 0 for the GPU (--backend cuda)");
  command->add_option("--threads", o->threads, "CPU threads (0: the CPUs this process may use, shared among the MPI ranks on a node when they are not bound)")->capture_default_str();
  command->add_option("--precision", o->request.precision,
                      "Activation storage: f32 (the reference), bf16, or auto (bf16 on a GPU from 4K up, else f32)")
      ->capture_default_str();
  command->add_option("--tiles", o->request.tiles, "Tile grid ROWSxCOLUMNS, or auto (one tile per MPI rank)")
      ->capture_default_str();
  command->add_option("--memory-per-rank", o->request.memory_per_rank,
                      "With --tiles auto: the most memory a rank may use (8GiB, 512MiB); tiles follow from it");
  command->add_option("--halo", o->request.halo, "Halo around each tile: exact (from the receptive field) or pixels")
      ->capture_default_str();
  command->add_option("--config", o->config, "TOML file with any of these settings (flags win)");
  command->add_option("--log-json", o->request.log_json, "Write one JSON object per iteration to this file");
  command->add_option("--bits", o->request.bits, "Output bits per channel: 8, 16, 32 (0: the format's default)")
      ->capture_default_str();
  command->add_flag("-q,--quiet", o->quiet, "No progress output");
  command->add_flag("--dry-run", o->request.dry_run,
                    "Check the inputs, show each scale's size, tiles and memory estimate, and stop without rendering");
  return [command, o] { return run_render(*command, *o); };
}

}  // namespace tessera::cli
