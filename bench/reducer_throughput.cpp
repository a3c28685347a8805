// GradientReducer cost, run by hand under MPI (mpirun -np 1 and -np 2; not a Google Benchmark):
// (a) bandwidth of reducing a full set of gradients vs one raw MPI_Allreduce of the same bytes,
// (b, c) the quickstart step time with no communication, without overlap and with overlap.
#include <mpi.h>
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "distributed/gradient_reducer.h"
#include "distributed/mpi_communicator.h"
#include "models/model_presets.h"
#include "objectives/objective.h"

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

// The slowest rank's time: a collective is as fast as its last participant.
double max_over_ranks(double v) {
  double out = 0;
  MPI_Allreduce(&v, &out, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
  return out;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

vdm::DenoiserNet build(const char* preset, int64_t channels, int64_t resolution) {
  torch::manual_seed(0);
  return vdm::make_model(vdm::model_preset(preset, channels, resolution));
}

struct Bandwidth {
  double bytes = 0, reducer_s = 0, raw_s = 0;
  int64_t buckets = 0;
};

// (a) Pure communication: a cheap backward (sum of all parameters) produces a gradient for
// every parameter, so the reducer sees a full step's worth; with overlap off nothing happens
// during it and finish() alone is timed: every bucket's all-reduce and the step status (the
// average is left to the optimiser, as in training). The baseline is one MPI_Allreduce over one float buffer of the
// same total size (sum only, no division). The two alternate, so that load from other
// processes on the machine hits both alike; medians over reps, slowest rank.
Bandwidth bandwidth(const char* preset, int64_t channels, int64_t resolution, int reps,
                    const vdm::CommunicatorPtr& comm) {
  auto net = build(preset, channels, resolution);
  vdm::GradientReducerOptions o;
  o.overlap = false;
  o.average = false;  // as the trainer runs it: the 1/world is folded into the optimiser's passes
  vdm::GradientReducer reducer(vdm::GradientReducer::named(net->named_parameters()), comm, o);
  Bandwidth out;
  for (auto b : reducer.bucket_sizes_bytes()) out.bytes += double(b);
  out.buckets = reducer.bucket_count();
  auto flat = torch::ones({int64_t(out.bytes / 4)}, torch::kFloat32);
  std::vector<double> reducer_times, raw_times;
  for (int i = 0; i <= reps; ++i) {  // the first is a warm-up
    torch::Tensor surrogate;
    for (auto& p : net->parameters()) surrogate = surrogate.defined() ? surrogate + p.sum() : p.sum();
    surrogate.backward();
    MPI_Barrier(MPI_COMM_WORLD);
    auto t0 = Clock::now();
    reducer.finish();
    const double reducer_s = max_over_ranks(seconds_since(t0));
    MPI_Barrier(MPI_COMM_WORLD);
    t0 = Clock::now();
    MPI_Allreduce(MPI_IN_PLACE, flat.data_ptr(), int(flat.numel()), MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
    const double raw_s = max_over_ranks(seconds_since(t0));
    if (i == 0) continue;
    reducer_times.push_back(reducer_s);
    raw_times.push_back(raw_s);
  }
  out.reducer_s = median(reducer_times);
  out.raw_s = median(raw_times);
  return out;
}

enum class Mode { NoComm, NoOverlap, Overlap };
const char* name(Mode m) { return m == Mode::NoComm ? "no_comm" : m == Mode::NoOverlap ? "no_overlap" : "overlap"; }

// (b, c) One training step of the quickstart model: eps-MSE forward, backward, and (unless
// NoComm) finish(), with gradients zeroed in place as Optimizer::zero_grad() does.
struct Stepper {
  Stepper(Mode mode, int64_t batch, const vdm::CommunicatorPtr& comm)
      : net(build("quickstart", 1, 28)), gen(at::make_generator<at::CPUGeneratorImpl>(uint64_t(comm->rank()))) {
    if (mode != Mode::NoComm) {
      vdm::GradientReducerOptions o;
      o.overlap = mode == Mode::Overlap;
      o.average = false;
      reducer = std::make_unique<vdm::GradientReducer>(vdm::GradientReducer::named(net->named_parameters()), comm, o);
    }
    vdm::ObjectiveOptions oo;
    oo.name = "eps_mse";
    objective = vdm::make_objective(oo, vdm::make_schedule(vdm::ScheduleOptions{}));
    torch::manual_seed(1 + comm->rank());
    x = torch::rand({batch, 1, 28, 28}) * 2 - 1;
  }
  void step() {
    for (auto& p : net->parameters())
      if (p.grad().defined()) p.mutable_grad().zero_();
    vdm::Denoiser denoiser = [&](const torch::Tensor& in, const torch::Tensor& cn, const torch::Tensor& l) {
      return net->forward(in, cn, l);
    };
    objective->forward(denoiser, x, torch::Tensor(), gen).loss.backward();
    if (reducer) reducer->finish();
  }
  vdm::DenoiserNet net;
  std::unique_ptr<vdm::GradientReducer> reducer;
  vdm::Objective objective;
  torch::Tensor x;
  at::Generator gen;
};

// Median step time per mode, slowest rank; the modes take turns step by step.
std::vector<double> step_ms(const std::vector<Mode>& modes, int64_t batch, int steps, const vdm::CommunicatorPtr& comm) {
  std::vector<std::unique_ptr<Stepper>> steppers;
  for (Mode m : modes) steppers.push_back(std::make_unique<Stepper>(m, batch, comm));
  std::vector<std::vector<double>> times(modes.size());
  for (int i = 0; i <= steps; ++i)
    for (size_t m = 0; m < modes.size(); ++m) {
      MPI_Barrier(MPI_COMM_WORLD);
      const auto t0 = Clock::now();
      steppers[m]->step();
      const double ms = 1e3 * max_over_ranks(seconds_since(t0));
      if (i > 0) times[m].push_back(ms);  // the first round warms up
    }
  std::vector<double> out;
  for (auto& t : times) out.push_back(median(t));
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  int steps = 7, reps = 7;
  for (int i = 1; i < argc; ++i) {
    if (std::strncmp(argv[i], "--steps=", 8) == 0) steps = std::atoi(argv[i] + 8);
    if (std::strncmp(argv[i], "--reps=", 7) == 0) reps = std::atoi(argv[i] + 7);
  }
  torch::set_num_threads(1);
  auto comm = std::make_shared<vdm::MpiCommunicator>(MPI_COMM_WORLD);
  const bool root = comm->rank() == 0;
  const int world = comm->world();
  const int64_t batch = 16;

  struct Row {
    const char* preset;
    Bandwidth b;
  };
  std::vector<Row> rows;
  rows.push_back({"quickstart", bandwidth("quickstart", 1, 28, 4 * reps, comm)});
  rows.push_back({"cifar10_vdm", bandwidth("cifar10_vdm", 3, 32, reps, comm)});
  const std::vector<Mode> modes{Mode::NoComm, Mode::NoOverlap, Mode::Overlap};
  const std::vector<double> ms = step_ms(modes, batch, steps, comm);

  if (root) {
    std::printf("reducer_throughput: %d rank(s), 1 intra-op thread, float32 gradients, bucket 25 MiB (first 1 MiB)\n\n",
                world);
    std::printf("(a) reducing all gradients (overlap off: finish() only) vs one raw MPI_Allreduce, medians of "
                "%d (quickstart) and %d (cifar10_vdm) repetitions\n", 4 * reps, reps);
    if (world == 1) std::printf("    (one rank: nothing to reduce, so both are near zero and the ratio means nothing)\n");
    std::printf("%-12s %9s %8s %12s %12s %12s %12s %7s\n", "model", "MB", "buckets", "reducer ms", "raw ms",
                "reducer GB/s", "raw GB/s", "ratio");
    for (const auto& r : rows)
      std::printf("%-12s %9.2f %8lld %12.3f %12.3f %12.3f %12.3f %7.2f\n", r.preset, r.b.bytes / 1e6,
                  (long long)r.b.buckets, 1e3 * r.b.reducer_s, 1e3 * r.b.raw_s, r.b.bytes / r.b.reducer_s / 1e9,
                  r.b.bytes / r.b.raw_s / 1e9, r.b.raw_s / r.b.reducer_s);
    std::printf("    (GB/s: gradient bytes / time; ratio: raw time / reducer time, 1.00 = no overhead)\n\n");
    std::printf("(b, c) quickstart step (eps-MSE forward + backward [+ finish]), batch %lld per rank, median of %d\n",
                (long long)batch, steps);
    std::printf("%-12s %10s %16s\n", "mode", "step ms", "vs no_comm");
    for (size_t m = 0; m < modes.size(); ++m)
      std::printf("%-12s %10.1f %15.1f%%\n", name(modes[m]), ms[m], 100.0 * (ms[m] / ms[0] - 1));
    std::printf("\n");
    for (const auto& r : rows)
      std::printf("reduce_gbps=%.4f raw_gbps=%.4f ratio=%.3f model=%s ranks=%d\n", r.b.bytes / r.b.reducer_s / 1e9,
                  r.b.bytes / r.b.raw_s / 1e9, r.b.raw_s / r.b.reducer_s, r.preset, world);
    for (size_t m = 0; m < modes.size(); ++m)
      std::printf("step_ms=%.2f mode=%s model=quickstart batch=%lld ranks=%d\n", ms[m], name(modes[m]),
                  (long long)batch, world);
  }
  MPI_Finalize();
  return 0;
}
