// RunConfig -> module options (see module_options.h).
#include "launch/module_options.h"

namespace vdm {

int64_t data_channels(const DataConfig& data) { return data.format == "idx" ? 1 : 3; }

ModelOptions model_options(const RunConfig& cfg) {
  ModelOptions o;
  o.preset = cfg.model.preset;
  o.in_channels = data_channels(cfg.data);
  o.resolution = cfg.data.resolution;
  o.num_classes = cfg.model.num_classes;
  o.channels = cfg.model.channels;
  o.dropout = cfg.model.dropout;
  return o;
}

}  // namespace vdm
