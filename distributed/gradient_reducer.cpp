// GradientReducer (see gradient_reducer.h): the start-up consistency check and broadcast, bucket
// layout, the per-parameter gradient hooks that launch bucket all-reduces in a fixed order, and
// finish(), which completes the step and detects parameters that received no gradient.
#include "distributed/gradient_reducer.h"

#include <torch/csrc/autograd/function.h>
#include <torch/csrc/autograd/function_hook.h>
#include <torch/csrc/autograd/variable.h>
#include <torch/torch.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <sstream>
#include <stdexcept>
#include <unordered_set>

// The protocol, in one place.
//
// Buckets. Parameters that require a gradient are taken in REVERSE registration order, because
// backward produces gradients roughly from the last layer to the first, and packed greedily
// into buckets: the first holds up to first_bucket_mb (small, so communication starts after the
// first few layers of backward), later ones up to bucket_mb; gradients that fit in bucket_mb
// altogether make one bucket. A bucket holds one dtype on one
// device, since it is one flat buffer handed to one all-reduce. A parameter larger than the cap
// gets a bucket of its own. Every parameter's .grad is a view into its bucket's buffer, so the
// autograd engine accumulates straight into the buffer and the averaged result lands in .grad
// with no copy in either direction. Bucket i is the i-th to be launched; the layout depends
// only on the parameter list and the options, which the start-up check proves identical on
// every rank, so bucket i is the same tensor of the same size everywhere.
//
// Readiness. A post-hook on each parameter's gradient accumulator fires once the engine has
// added this backward's gradient into .grad. The parameter is then ready; a bucket is ready
// when all of its parameters are.
//
// Launch order. MPI (and NCCL) match collectives by the order in which each rank issues them,
// not by buffer. Readiness order is not the same on every rank (it follows the autograd
// engine's scheduling, and unused parameters leave holes), so launching a bucket the moment it
// is ready could pair rank 0's bucket 3 with rank 1's bucket 2: wrong sums, or a hang when
// their sizes differ. Buckets are therefore launched strictly in index order: a ready bucket
// whose predecessors have not all been launched waits, and each time a bucket becomes ready
// every ready bucket at the head of the queue is launched. finish() marks whatever is still not
// ready (parameters that got no gradient in this backward, or everything when overlap is off)
// and so launches the rest in the same order, then waits for all buckets in order. (Without
// overlap, finish() all-reduces the buckets one by one with blocking calls, in the same order.)
//
// Unused parameters. The last bucket's buffer carries a few elements of step status after its
// gradients, filled just before it is launched; at that moment every other bucket has been
// launched, so every gradient of the step has arrived or never will. With find_unused=false it
// is one element: the number of parameters that got no gradient since the last finish(). If
// the reduced value is non-zero, some rank missed a parameter; a second all-reduce (only then)
// tells every rank which parameters, and every rank throws the same error. With
// find_unused=true it is one element per parameter, 1 where it got a gradient: a parameter
// with no gradient on any rank keeps an undefined .grad (the optimiser skips it), one used on
// some ranks gets the average, with zeros from the ranks that did not use it. The decisions
// depend only on reduced values, so every rank takes the same branch: an error is raised
// everywhere, never on one rank while the others wait in a collective, and a healthy step
// costs no collective beyond the buckets. (Counts are small integers and the tests are "> 0"
// and "== 0", exact in any floating dtype even after the average.)

namespace vdm {
namespace {

constexpr uint64_t kFnvOffset = 1469598103934665603ull;
constexpr uint64_t kFnvPrime = 1099511628211ull;

uint64_t fnv1a(const std::string& s, uint64_t h = kFnvOffset) {
  for (unsigned char c : s) {
    h ^= c;
    h *= kFnvPrime;
  }
  return h;
}

std::string describe(const std::string& name, const torch::Tensor& t) {
  std::ostringstream out;
  out << name << " [";
  for (int64_t d = 0; d < t.dim(); ++d) out << (d ? ", " : "") << t.size(d);
  out << "] " << c10::toString(t.scalar_type()) << " " << c10::DeviceTypeName(t.device().type(), true)
      << (t.requires_grad() ? "" : " (frozen)");
  return out.str();
}

// A tensor that shares `buffer`'s storage but is not an autograd view of it: Optimizer::
// zero_grad() calls grad.detach_(), which torch refuses on autograd views. It takes `like`'s
// strides when they are dense (a channels-last weight gets a channels-last gradient, so the
// bucket holds the gradient in the parameter's memory order), else row-major ones.
torch::Tensor alias(const torch::Tensor& buffer, int64_t offset, const torch::Tensor& like) {
  torch::NoGradGuard no_grad;
  const auto sizes = like.sizes();
  std::vector<int64_t> strides(sizes.size(), 1);
  if (like.is_non_overlapping_and_dense()) {
    strides = like.strides().vec();
  } else {
    for (int64_t d = int64_t(sizes.size()) - 2; d >= 0; --d) strides[d] = strides[d + 1] * sizes[d + 1];
  }
  return torch::empty({0}, buffer.options()).set_(buffer.storage(), buffer.storage_offset() + offset, sizes, strides);
}

bool same_memory(const torch::Tensor& a, const torch::Tensor& b) {
  return a.defined() && a.data_ptr() == b.data_ptr() && a.sizes() == b.sizes() && a.strides() == b.strides() &&
         a.scalar_type() == b.scalar_type();
}

}  // namespace

// Why the accumulator's post-hook and not Tensor::register_hook: a tensor hook on a leaf runs
// inside AccumulateGrad *before* the new gradient is added to .grad and sees only this
// backward's contribution; gradients accumulated under no_sync() would have to be added by
// hand. The post-hook runs after AccumulateGrad has added into .grad (which is the bucket view),
// so the bucket already holds the full local sum. A variable holds its accumulator only weakly
// and torch recreates it on the next forward once the graph is freed, which would silently
// drop the hook: the reducer therefore keeps a strong reference to every accumulator.
struct GradientReducer::Hook : torch::autograd::FunctionPostHook {
  Hook(GradientReducer* reducer, size_t index) : reducer_(reducer), index_(index) {}
  torch::autograd::variable_list operator()(const torch::autograd::variable_list& outputs,
                                            const torch::autograd::variable_list& /*inputs*/) override {
    reducer_->on_gradient(index_);
    return outputs;
  }
  GradientReducer* reducer_;
  size_t index_;
};

GradientReducer::GradientReducer(NamedParameters params, CommunicatorPtr comm, GradientReducerOptions options)
    : comm_(std::move(comm)), options_(options) {
  if (!comm_) throw std::invalid_argument("GradientReducer: no communicator");
  if (!(options_.bucket_mb > 0) || !(options_.first_bucket_mb > 0))
    throw std::invalid_argument("GradientReducer: bucket_mb and first_bucket_mb must be > 0");
  // A tied parameter appears once per owner in named_parameters(); it has one gradient and
  // must sit in one bucket once, under its first name.
  std::unordered_set<const c10::TensorImpl*> seen;
  for (auto& [name, tensor] : params) {
    if (!tensor.defined()) throw std::invalid_argument("GradientReducer: parameter '" + name + "' is undefined");
    if (tensor.requires_grad() && !tensor.is_leaf())
      throw std::invalid_argument("GradientReducer: parameter '" + name + "' is not a leaf tensor");
    if (!seen.insert(tensor.unsafeGetTensorImpl()).second) continue;
    Param p;
    p.name = name;
    p.tensor = tensor;
    params_.push_back(std::move(p));
  }
  build_buckets();
  check_same_parameters();
  broadcast_parameters();
  for (size_t i = 0; i < params_.size(); ++i) {
    Param& p = params_[i];
    if (p.bucket < 0) continue;
    p.accumulator = torch::autograd::impl::grad_accumulator(p.tensor);
    p.hook_key = p.accumulator->add_post_hook(std::make_unique<Hook>(this, i));
  }
  reset_step();
}

GradientReducer::~GradientReducer() {
  for (auto& p : params_)
    if (p.accumulator) p.accumulator->del_post_hook(p.hook_key);
}

void GradientReducer::build_buckets() {
  const double mib = 1024.0 * 1024.0;
  const int64_t first_cap = std::max<int64_t>(1, int64_t(options_.first_bucket_mb * mib));
  const int64_t cap = std::max<int64_t>(1, int64_t(options_.bucket_mb * mib));
  struct Open {
    std::vector<size_t> members;
    int64_t bytes = 0;
    int closed = 0;  // buckets already closed for this dtype/device
  };
  std::map<std::string, Open> open;  // one bucket under construction per dtype/device
  std::vector<std::vector<size_t>> built;
  auto key_of = [](const torch::Tensor& t) {
    return std::string(c10::toString(t.scalar_type())) + "@" + t.device().str();
  };
  // Gradients that fit in one full-size bucket get exactly one: the small first bucket buys
  // overlap only by paying a second collective's latency, and a model this small has little
  // backward left to overlap with once its first MiB of gradients is ready.
  std::map<std::string, int64_t> total_bytes;
  for (const auto& p : params_)
    if (p.tensor.requires_grad()) total_bytes[key_of(p.tensor)] += p.tensor.numel() * int64_t(p.tensor.element_size());
  for (const auto& [key, bytes] : total_bytes)
    if (bytes <= cap) open[key].closed = 1;
  for (size_t k = params_.size(); k-- > 0;) {
    const torch::Tensor& t = params_[k].tensor;
    if (!t.requires_grad()) continue;
    if (t.is_sparse()) throw std::invalid_argument("GradientReducer: sparse parameter '" + params_[k].name + "'");
    Open& o = open[key_of(t)];
    const int64_t bytes = t.numel() * int64_t(t.element_size());
    if (!o.members.empty() && o.bytes + bytes > (o.closed == 0 ? first_cap : cap)) {
      built.push_back(std::move(o.members));
      o.members.clear();
      o.bytes = 0;
      ++o.closed;
    }
    o.members.push_back(k);
    o.bytes += bytes;
  }
  for (auto& [key, o] : open)
    if (!o.members.empty()) built.push_back(std::move(o.members));
  // Launch order: by the first member's place in reverse registration order, i.e. the order
  // in which backward is expected to complete them.
  std::sort(built.begin(), built.end(), [](const auto& a, const auto& b) { return a.front() > b.front(); });

  int64_t trainable = 0;
  for (const auto& members : built) trainable += int64_t(members.size());
  status_slots_ = options_.find_unused ? trainable : 1;
  torch::NoGradGuard no_grad;
  for (auto& members : built) {
    Bucket b;
    int64_t numel = 0;
    for (size_t k : members) numel += params_[k].tensor.numel();
    b.grad_numel = numel;
    if (buckets_.size() + 1 == built.size()) numel += status_slots_;  // the last bucket
    b.buffer = torch::zeros({numel}, params_[members.front()].tensor.options().requires_grad(false));
    int64_t offset = 0;
    for (size_t k : members) {
      Param& p = params_[k];
      p.bucket = int64_t(buckets_.size());
      p.view = alias(b.buffer, offset, p.tensor);
      offset += p.tensor.numel();
    }
    b.members = std::move(members);
    buckets_.push_back(std::move(b));
  }
}

// All ranks gather one fingerprint each: the parameter count, the total number of elements, a
// hash of every "name [shape] dtype device" and a hash of the bucket layout and of the options
// that decide which collectives the reducer issues (find_unused, overlap). Only when they
// differ (the same decision on every rank, as every rank sees the same gathered table) do ranks
// spend two more collectives to name the first parameter that differs.
void GradientReducer::check_same_parameters() {
  const auto opts = torch::TensorOptions().dtype(torch::kInt64).device(
      params_.empty() ? torch::Device(torch::kCPU) : params_.front().tensor.device());
  const int64_t count = int64_t(params_.size());
  int64_t numel = 0;
  uint64_t hash = kFnvOffset;
  std::vector<int64_t> per_param;
  for (const auto& p : params_) {
    const std::string d = describe(p.name, p.tensor);
    numel += p.tensor.numel();
    hash = fnv1a(d + ";", hash);
    per_param.push_back(int64_t(fnv1a(d)));
  }
  std::ostringstream layout;
  layout << options_.find_unused << options_.overlap << options_.average << ";";
  for (const auto& b : buckets_) layout << b.buffer.numel() << ",";
  const int64_t layout_hash = int64_t(fnv1a(layout.str()));
  auto mine = torch::tensor({count, numel, int64_t(hash), layout_hash}, torch::kInt64).to(opts.device());
  const auto table = comm_->all_gather(mine).cpu();  // [world, 4]
  const auto t = table.accessor<int64_t, 2>();
  const int world = int(table.size(0));
  bool params_differ = false, layout_differs = false;
  for (int r = 1; r < world; ++r) {
    params_differ |= t[r][0] != t[0][0] || t[r][1] != t[0][1] || t[r][2] != t[0][2];
    layout_differs |= t[r][3] != t[0][3];
  }
  if (!params_differ && !layout_differs) return;

  std::ostringstream msg;
  if (params_differ) {
    msg << "GradientReducer: the ranks do not hold the same model (every rank must build the same "
           "parameters, in the same order, with the same shapes and dtypes).";
    int64_t max_count = 0;
    for (int r = 0; r < world; ++r) max_count = std::max(max_count, t[r][0]);
    for (int r = 1; r < world; ++r)
      if (t[r][0] != t[0][0] || t[r][1] != t[0][1] || t[r][2] != t[0][2])
        msg << " Rank " << r << " has " << t[r][0] << " parameters with " << t[r][1] << " elements, rank 0 has "
            << t[0][0] << " with " << t[0][1] << ".";
    // The first index at which some rank's parameter differs from rank 0's (a rank with fewer
    // parameters pads with zeros and reports "(none)" there).
    auto hashes = torch::zeros({max_count}, torch::kInt64);
    std::copy(per_param.begin(), per_param.end(), hashes.data_ptr<int64_t>());
    const auto all_t = comm_->all_gather(hashes.to(opts.device())).cpu();  // [world, max_count]
    const auto all = all_t.accessor<int64_t, 2>();
    int64_t first = -1;
    for (int64_t i = 0; i < max_count && first < 0; ++i)
      for (int r = 1; r < world; ++r)
        if (all[r][i] != all[0][i] || (i >= t[r][0]) != (i >= t[0][0])) {
          first = i;
          break;
        }
    if (first >= 0) {
      constexpr int64_t kLen = 200;
      std::string d = first < count ? describe(params_[size_t(first)].name, params_[size_t(first)].tensor)
                                    : std::string("(none)");
      d.resize(std::min<size_t>(d.size(), kLen));
      auto bytes = torch::zeros({kLen}, torch::kUInt8);
      std::memcpy(bytes.data_ptr(), d.data(), d.size());
      const auto names = comm_->all_gather(bytes.to(opts.device())).cpu().contiguous();  // [world, kLen]
      auto name_of = [&](int r) {
        const char* p = static_cast<const char*>(names[r].data_ptr());
        return std::string(p, strnlen(p, kLen));
      };
      msg << " First difference at parameter #" << first << ": rank 0 has '" << name_of(0) << "'";
      for (int r = 1; r < world; ++r)
        if (name_of(r) != name_of(0)) msg << ", rank " << r << " has '" << name_of(r) << "'";
      msg << ".";
    }
  } else {
    msg << "GradientReducer: the ranks hold the same parameters but build different buckets: "
           "distributed.bucket_mb, first_bucket_mb, find_unused, overlap and average must be the same on every rank "
           "(they differ from rank 0's on rank";
    for (int r = 1; r < world; ++r)
      if (t[r][3] != t[0][3]) msg << " " << r;
    msg << ").";
  }
  throw std::runtime_error(msg.str());
}

// Rank 0's values, staged through the bucket buffers so that a model with hundreds of
// parameters costs one broadcast per bucket rather than one per parameter.
void GradientReducer::broadcast_parameters() {
  torch::NoGradGuard no_grad;
  for (auto& b : buckets_) {
    for (size_t k : b.members) params_[k].view.copy_(params_[k].tensor);
    comm_->broadcast(b.buffer, 0);
    for (size_t k : b.members) params_[k].tensor.copy_(params_[k].view);
    b.buffer.zero_();
  }
  for (auto& p : params_) {
    if (p.bucket >= 0) continue;  // frozen: not in a bucket, but must agree all the same
    auto staged = p.tensor.contiguous().clone();
    comm_->broadcast(staged, 0);
    p.tensor.copy_(staged);
  }
}

std::vector<int64_t> GradientReducer::bucket_sizes_bytes() const {
  std::vector<int64_t> out;
  for (const auto& b : buckets_) out.push_back(b.grad_numel * int64_t(b.buffer.element_size()));
  return out;
}

std::vector<GradientReducer::FlatBucket> GradientReducer::flat_buckets() const {
  std::vector<FlatBucket> out;
  for (const auto& b : buckets_) {
    FlatBucket f;
    f.gradients = b.buffer.narrow(0, 0, b.grad_numel);
    for (size_t k : b.members) f.members.emplace_back(params_[k].tensor, params_[k].view);
    out.push_back(std::move(f));
  }
  return out;
}

std::vector<std::vector<std::string>> GradientReducer::bucket_parameter_names() const {
  std::vector<std::vector<std::string>> out;
  for (const auto& b : buckets_) {
    out.emplace_back();
    for (size_t k : b.members) out.back().push_back(params_[k].name);
  }
  return out;
}

// Runs on the thread that executes the accumulator: for a CPU backward that is the thread
// that called backward(), so MPI is only ever called from the training thread.
void GradientReducer::on_gradient(size_t index) {
  Param& p = params_[index];
  p.used = true;
  // Inside no_sync() the gradient simply stays accumulated in .grad; without overlap every
  // bucket waits for finish().
  if (no_sync_ || !options_.overlap) return;
  if (p.ready) {
    if (size_t(p.bucket) < next_launch_)
      throw std::runtime_error("GradientReducer: a second gradient for '" + p.name +
                               "' arrived while its bucket was being all-reduced. Call finish() after "
                               "each backward(), or run the extra backward passes inside no_sync().");
    return;  // bucket not launched yet: the second gradient was added into the view, fine
  }
  absorb(index);
  mark_ready(index);
  poll();
}

// Makes .grad the bucket view, carrying over whatever local gradient .grad held. Usually it
// already is the view and this is a pointer comparison; a copy happens only after the user set
// .grad to undefined (zero_grad(set_to_none)) or to a tensor of their own. Returns whether there
// was a local gradient at all.
bool GradientReducer::absorb(size_t index) {
  Param& p = params_[index];
  torch::Tensor& grad = p.tensor.mutable_grad();
  if (same_memory(grad, p.view)) return true;
  torch::NoGradGuard no_grad;
  const bool had = grad.defined();
  if (had) {
    if (grad.is_sparse()) throw std::runtime_error("GradientReducer: sparse gradient for '" + p.name + "'");
    p.view.copy_(grad);
  } else {
    p.view.zero_();
  }
  grad = p.view;
  return had;
}

void GradientReducer::mark_ready(size_t index) {
  Param& p = params_[index];
  p.ready = true;
  if (--buckets_[size_t(p.bucket)].pending == 0) launch_in_order();
}

// Without overlap there is nothing to overlap with, and a blocking all-reduce is the faster
// call (Open MPI's non-blocking collectives take a slower, generic path: 1.5-2x the time for
// MiB-sized buffers here). The same holds for a single bucket: it becomes ready with the last
// gradient of backward, when there is nothing left to overlap with. MPI never matches a blocking
// collective with a non-blocking one, which is why the choice depends only on the options and
// the layout (identical on every rank, see the start-up check), never on when a bucket happens
// to become ready.
//
// A single rank has nothing to average with: its buckets are not handed to the communicator at
// all (the Avg division alone would rewrite every gradient), but the bookkeeping is the same.
void GradientReducer::launch_in_order() {
  while (next_launch_ < buckets_.size() && buckets_[next_launch_].pending == 0) {
    Bucket& b = buckets_[next_launch_];
    if (next_launch_ + 1 == buckets_.size()) write_status(b);
    if (comm_->world() > 1) {
      if (options_.overlap && buckets_.size() > 1)
        b.work = comm_->all_reduce_async(b.buffer, options_.average ? ReduceOp::Avg : ReduceOp::Sum);
      else
        comm_->all_reduce(b.buffer, options_.average ? ReduceOp::Avg : ReduceOp::Sum);
    }
    ++next_launch_;
  }
}

// MPI without an asynchronous progress thread advances a non-blocking collective only inside
// MPI calls; testing the oldest unfinished bucket from the hooks keeps the reductions moving
// while backward computes.
void GradientReducer::poll() {
  while (next_poll_ < next_launch_ && (!buckets_[next_poll_].work || buckets_[next_poll_].work->done())) ++next_poll_;
}

// The step status (see the protocol above) into the tail of the last bucket.
void GradientReducer::write_status(Bucket& last) {
  std::vector<float> status;
  if (options_.find_unused) {
    for (const auto& b : buckets_)
      for (size_t k : b.members) status.push_back(params_[k].used ? 1.f : 0.f);
  } else {
    int64_t missing = 0;
    for (const auto& p : params_) missing += p.bucket >= 0 && !p.used;
    status.push_back(float(missing));
  }
  last.buffer.narrow(0, last.grad_numel, status_slots_)
      .copy_(torch::from_blob(status.data(), {int64_t(status.size())}, torch::kFloat32));
}

void GradientReducer::wait_all() {
  for (auto& b : buckets_)
    if (b.work) b.work->wait();
}

void GradientReducer::reset_step() {
  for (auto& p : params_) p.ready = p.used = p.grad_was_undefined = false;
  for (auto& b : buckets_) {
    b.pending = b.members.size();
    b.work.reset();
  }
  next_launch_ = next_poll_ = 0;
}

void GradientReducer::finish() {
  if (no_sync_) return;
  // Everything not ready yet: parameters without a gradient in this backward (their local
  // contribution is what .grad holds from no_sync() passes, or zero) and, without overlap, all
  // of them. Marking them ready launches the remaining buckets in index order.
  for (auto& b : buckets_)
    for (size_t k : b.members) {
      Param& p = params_[k];
      if (p.ready) continue;
      p.grad_was_undefined = !absorb(k);
      mark_ready(k);
    }

  wait_all();
  // The status read below blocks the host until the reduction is done. With NCCL a dead peer
  // would hang it; synchronize() waits while polling NCCL's error state instead, and throws.
  if (comm_->world() > 1) comm_->synchronize();
  if (buckets_.empty()) return reset_step();
  const Bucket& last = buckets_.back();
  const auto status = last.buffer.narrow(0, last.grad_numel, status_slots_).to(torch::kCPU, torch::kFloat32);
  if (!options_.find_unused) {
    if (status.item<float>() > 0) {
      // Some rank missed a parameter: find out which, on every rank, then fail everywhere.
      auto used_by = torch::zeros({int64_t(params_.size())}, torch::kInt32);
      auto a = used_by.accessor<int32_t, 1>();
      for (size_t i = 0; i < params_.size(); ++i) a[int64_t(i)] = params_[i].used || params_[i].bucket < 0;
      used_by = used_by.to(last.buffer.device());
      comm_->all_reduce(used_by, ReduceOp::Sum);
      reset_step();
      fail_unused(used_by.cpu());
    }
  } else {
    // Unused on every rank and no local gradient: leave .grad undefined, as it was, so the
    // optimiser skips the parameter instead of applying a zero gradient.
    auto used = status.accessor<float, 1>();
    int64_t j = 0;
    for (const auto& b : buckets_)
      for (size_t k : b.members)
        if (used[j++] == 0 && params_[k].grad_was_undefined) params_[k].tensor.mutable_grad() = torch::Tensor();
  }
  reset_step();
}

void GradientReducer::zero_grad() {
  torch::NoGradGuard no_grad;
  for (auto& b : buckets_) b.buffer.zero_();
  for (auto& p : params_) {
    torch::Tensor& grad = p.tensor.mutable_grad();
    if (grad.defined() && !same_memory(grad, p.view)) grad.zero_();
  }
}

void GradientReducer::fail_unused(const torch::Tensor& used_by) {
  const int world = comm_->world();
  auto a = used_by.accessor<int32_t, 1>();
  std::ostringstream msg;
  int64_t n = 0;
  for (size_t i = 0; i < params_.size(); ++i) {
    if (a[int64_t(i)] >= world) continue;
    if (n < 8)
      msg << (n ? ", " : " ") << "'" << params_[i].name << "' (no gradient on " << world - a[int64_t(i)] << " of "
          << world << " ranks)";
    ++n;
  }
  if (n > 8) msg << " and " << n - 8 << " more";
  throw std::runtime_error(
      "GradientReducer: " + std::to_string(n) + " parameter(s) received no gradient in this step:" + msg.str() +
      ". Every parameter must take part in the loss on every rank, or set distributed.find_unused=true "
      "(GradientReducerOptions::find_unused) to reduce such parameters as zero.");
}

GradientReducer::NoSyncGuard::NoSyncGuard(GradientReducer* reducer) : reducer_(reducer), previous_(reducer->no_sync_) {
  reducer_->no_sync_ = true;
}

GradientReducer::NoSyncGuard::~NoSyncGuard() {
  if (reducer_) reducer_->no_sync_ = previous_;
}

}  // namespace vdm
