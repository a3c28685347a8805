// Loading a trained model (see trained_model.h): the checkpoint's config.yaml into options, then
// training/trained_model.h builds the network and loads the weights.
#include "launch/trained_model.h"

#include "training/trained_model.h"

namespace vdm {

TrainedModel load_trained_model(const std::string& run_or_checkpoint, bool ema) {
  const LoadedCheckpoint ckpt = find_checkpoint(run_or_checkpoint);
  TrainedModel out;
  out.step = ckpt.step;
  out.checkpoint = ckpt.path;
  out.ema = ema;
  const auto cfg_it = ckpt.files.find("config.yaml");
  if (cfg_it == ckpt.files.end()) throw std::runtime_error(ckpt.path + ": config.yaml is missing");
  out.config = parse_config(cfg_it->second, ckpt.path + "/config.yaml");
  Network net = load_network(ckpt, out.config.train.model, out.config.train.schedule, out.config.train.objective, ema);
  out.model = net.model;
  out.objective = net.objective;
  return out;
}

}  // namespace vdm
