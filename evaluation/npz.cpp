// .npz reading and writing: libzip for the archive (stored or deflated entries alike), a small
// parser for the .npy header (a Python dict literal), and the data copied out as little-endian
// float64/float32. The archive is built in memory and written with write_file_atomically.
#include "evaluation/npz.h"

#include <torch/torch.h>
#include <zip.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <memory>
#include <sstream>
#include <vector>

#include "data/atomic_file.h"

namespace vdm {
namespace {

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
              "the .npy reader copies little-endian data as is");

const char kMagic[] = "\x93NUMPY";
constexpr size_t kMagicSize = 6;

std::string zip_message(int code) {
  zip_error_t error;
  zip_error_init_with_code(&error, code);
  std::string message = zip_error_strerror(&error);
  zip_error_fini(&error);
  return message;
}

// The value after 'key': in the header dict, from its first non-blank character on.
size_t value_start(const std::string& header, const std::string& key, const std::string& what) {
  size_t at = header.find("'" + key + "'");
  if (at == std::string::npos) at = header.find("\"" + key + "\"");
  if (at == std::string::npos) throw NpzError(what + ": .npy header has no '" + key + "': " + header);
  at = header.find(':', at);
  if (at == std::string::npos) throw NpzError(what + ": malformed .npy header: " + header);
  at = header.find_first_not_of(" \t", at + 1);
  if (at == std::string::npos) throw NpzError(what + ": malformed .npy header: " + header);
  return at;
}

struct NpyHeader {
  std::string descr;
  bool fortran_order = false;
  std::vector<int64_t> shape;
};

NpyHeader parse_header(const std::string& header, const std::string& what) {
  NpyHeader h;
  size_t at = value_start(header, "descr", what);
  const char quote = header[at];
  const size_t end = header.find(quote, at + 1);
  if ((quote != '\'' && quote != '"') || end == std::string::npos)
    throw NpzError(what + ": the .npy dtype is not a simple type string (a structured or object "
                   "array?): " + header);
  h.descr = header.substr(at + 1, end - at - 1);

  at = value_start(header, "fortran_order", what);
  if (header.compare(at, 4, "True") == 0) h.fortran_order = true;
  else if (header.compare(at, 5, "False") != 0)
    throw NpzError(what + ": malformed fortran_order in .npy header: " + header);

  at = value_start(header, "shape", what);
  const size_t close = header.find(')', at);
  if (header[at] != '(' || close == std::string::npos)
    throw NpzError(what + ": malformed shape in .npy header: " + header);
  std::stringstream dims(header.substr(at + 1, close - at - 1));
  std::string item;
  while (std::getline(dims, item, ',')) {
    const size_t first = item.find_first_not_of(" \tL");
    if (first == std::string::npos) continue;  // the empty item after "3,"
    try {
      size_t used = 0;
      const long long d = std::stoll(item.substr(first), &used);
      if (d < 0) throw std::invalid_argument("negative");
      h.shape.push_back(d);
    } catch (const std::exception&) {
      throw NpzError(what + ": malformed shape in .npy header: " + header);
    }
  }
  return h;
}

std::string read_entry(zip_t* archive, zip_uint64_t index, const std::string& what) {
  zip_stat_t st;
  zip_stat_init(&st);
  if (zip_stat_index(archive, index, 0, &st) != 0 || !(st.valid & ZIP_STAT_SIZE))
    throw NpzError(what + ": cannot read the entry's size: " + zip_strerror(archive));
  std::string bytes(static_cast<size_t>(st.size), '\0');
  zip_file_t* file = zip_fopen_index(archive, index, 0);
  if (!file) throw NpzError(what + ": cannot open the entry: " + zip_strerror(archive));
  const zip_int64_t got = zip_fread(file, bytes.data(), st.size);
  const std::string error = got < 0 ? zip_file_strerror(file) : "";
  zip_fclose(file);
  if (got != static_cast<zip_int64_t>(st.size))
    throw NpzError(what + ": the entry is truncated or corrupt" + (error.empty() ? "" : ": " + error));
  return bytes;
}

}  // namespace

torch::Tensor parse_npy(const std::string& bytes, const std::string& what) {
  if (bytes.size() < kMagicSize + 4 || std::memcmp(bytes.data(), kMagic, kMagicSize) != 0)
    throw NpzError(what + ": not an .npy array (no \\x93NUMPY magic)");
  const int major = static_cast<uint8_t>(bytes[6]);
  size_t header_len = 0, offset = 0;
  if (major == 1) {
    header_len = static_cast<uint8_t>(bytes[8]) | size_t(static_cast<uint8_t>(bytes[9])) << 8;
    offset = 10;
  } else if (major == 2 || major == 3) {
    if (bytes.size() < 12) throw NpzError(what + ": truncated .npy header");
    for (int i = 3; i >= 0; --i) header_len = header_len << 8 | static_cast<uint8_t>(bytes[8 + i]);
    offset = 12;
  } else {
    throw NpzError(what + ": .npy format version " + std::to_string(major) +
                   " is not supported (versions 1, 2 and 3 are)");
  }
  if (bytes.size() < offset + header_len) throw NpzError(what + ": truncated .npy header");
  const NpyHeader h = parse_header(bytes.substr(offset, header_len), what);
  offset += header_len;

  torch::ScalarType dtype;
  size_t item = 0;
  if (h.descr == "<f8") dtype = torch::kFloat64, item = 8;
  else if (h.descr == "<f4") dtype = torch::kFloat32, item = 4;
  else
    throw NpzError(what + ": dtype '" + h.descr + "' is not supported; vdm reads '<f8' (float64) "
                   "and '<f4' (float32): convert with numpy, e.g. np.savez(path, mu=mu.astype("
                   "np.float64), sigma=sigma.astype(np.float64))");
  int64_t numel = 1;
  for (int64_t d : h.shape) numel *= d;
  if (bytes.size() - offset != size_t(numel) * item)
    throw NpzError(what + ": holds " + std::to_string(bytes.size() - offset) + " data bytes, but "
                   "its header promises " + std::to_string(size_t(numel) * item) + " (truncated?)");
  // Fortran order is the C-order array of the reversed shape, transposed.
  std::vector<int64_t> stored(h.shape);
  if (h.fortran_order) std::reverse(stored.begin(), stored.end());
  auto t = torch::empty(stored, torch::TensorOptions().dtype(dtype));
  if (numel > 0) std::memcpy(t.data_ptr(), bytes.data() + offset, size_t(numel) * item);
  if (h.fortran_order && t.dim() > 1) {
    std::vector<int64_t> order;
    for (int64_t i = t.dim() - 1; i >= 0; --i) order.push_back(i);
    t = t.permute(order).contiguous();
  }
  return t;
}

std::string format_npy(const torch::Tensor& array) {
  if (!array.is_floating_point())
    throw std::invalid_argument("write_npz: arrays must be floating point, got " +
                                std::string(c10::toString(array.scalar_type())));
  auto t = array.detach().to(torch::kCPU, torch::kFloat64).contiguous();
  std::string shape = "(";
  for (int64_t i = 0; i < t.dim(); ++i) {
    if (i > 0) shape += ", ";
    shape += std::to_string(t.size(i));
  }
  if (t.dim() == 1) shape += ",";
  shape += ")";
  std::string header = "{'descr': '<f8', 'fortran_order': False, 'shape': " + shape + ", }";
  // numpy pads the header with spaces and a newline so the data starts 64-byte aligned.
  const size_t unpadded = kMagicSize + 4 + header.size() + 1;
  header.append((64 - unpadded % 64) % 64, ' ');
  header += '\n';
  std::string out(kMagic, kMagicSize);
  out += char(1);
  out += char(0);
  out += char(header.size() & 0xff);
  out += char(header.size() >> 8);
  out += header;
  out.append(static_cast<const char*>(t.data_ptr()), size_t(t.numel()) * 8);
  return out;
}

std::map<std::string, torch::Tensor> read_npz(const std::string& path) {
  int code = 0;
  zip_t* archive = zip_open(path.c_str(), ZIP_RDONLY, &code);
  if (!archive) {
    if (code == ZIP_ER_NOENT || code == ZIP_ER_OPEN)
      throw NpzError(path + ": cannot open (" + zip_message(code) + ")");
    throw NpzError(path + ": not an .npz file (a zip archive of .npy arrays, as numpy.savez writes): " +
                   zip_message(code));
  }
  std::unique_ptr<zip_t, void (*)(zip_t*)> guard(archive, [](zip_t* z) { zip_discard(z); });
  std::map<std::string, torch::Tensor> arrays;
  const zip_int64_t entries = zip_get_num_entries(archive, 0);
  for (zip_int64_t i = 0; i < entries; ++i) {
    const char* raw = zip_get_name(archive, zip_uint64_t(i), 0);
    if (!raw) continue;
    std::string name = raw;
    if (name.size() < 4 || name.compare(name.size() - 4, 4, ".npy") != 0) continue;
    name.resize(name.size() - 4);
    const std::string what = path + ": array '" + name + "'";
    arrays[name] = parse_npy(read_entry(archive, zip_uint64_t(i), what), what);
  }
  return arrays;
}

void write_npz(const std::string& path, const std::map<std::string, torch::Tensor>& arrays,
               bool compress) {
  std::vector<std::string> payloads;
  payloads.reserve(arrays.size());
  for (const auto& [name, array] : arrays) payloads.push_back(format_npy(array));

  zip_error_t error;
  zip_error_init(&error);
  auto fail = [&](const std::string& step) {
    std::string message = "write_npz " + path + ": " + step + ": " + zip_error_strerror(&error);
    zip_error_fini(&error);
    throw NpzError(message);
  };
  zip_source_t* memory = zip_source_buffer_create(nullptr, 0, 0, &error);
  if (!memory) fail("cannot create a buffer");
  zip_t* archive = zip_open_from_source(memory, ZIP_TRUNCATE, &error);
  if (!archive) {
    zip_source_free(memory);
    fail("cannot start the archive");
  }
  // Keeps the buffer alive past zip_close, which would otherwise free it.
  zip_source_keep(memory);
  std::unique_ptr<zip_source_t, void (*)(zip_source_t*)> memory_guard(memory, zip_source_free);
  size_t k = 0;
  for (const auto& entry : arrays) {
    const std::string& bytes = payloads[k++];
    zip_source_t* source = zip_source_buffer(archive, bytes.data(), bytes.size(), 0);
    const zip_int64_t index = source ? zip_file_add(archive, (entry.first + ".npy").c_str(), source,
                                                     ZIP_FL_OVERWRITE | ZIP_FL_ENC_UTF_8)
                                     : -1;
    if (index < 0) {
      if (source) zip_source_free(source);
      zip_error_set(&error, zip_error_code_zip(zip_get_error(archive)), 0);
      zip_discard(archive);
      fail("cannot add " + entry.first);
    }
    zip_set_file_compression(archive, zip_uint64_t(index), compress ? ZIP_CM_DEFLATE : ZIP_CM_STORE, 0);
    // A fixed time stamp makes the same statistics give the same bytes.
    zip_file_set_mtime(archive, zip_uint64_t(index), 315619200, 0);  // 1980-01-02
  }
  if (zip_close(archive) != 0) {
    zip_error_set(&error, zip_error_code_zip(zip_get_error(archive)), 0);
    zip_discard(archive);
    fail("cannot finish the archive");
  }

  if (zip_source_open(memory) != 0) fail("cannot read back the archive");
  zip_source_seek(memory, 0, SEEK_END);
  const zip_int64_t size = zip_source_tell(memory);
  zip_source_seek(memory, 0, SEEK_SET);
  std::string out(size > 0 ? size_t(size) : 0, '\0');
  const zip_int64_t got = size > 0 ? zip_source_read(memory, out.data(), zip_uint64_t(size)) : 0;
  zip_source_close(memory);
  if (got != size) fail("cannot read back the archive");
  zip_error_fini(&error);
  write_file_atomically(path, out.data(), out.size());
}

}  // namespace vdm
