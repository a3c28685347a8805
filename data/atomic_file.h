// Whole-file writes that a crash cannot leave half-done: the bytes go to PATH.tmp.<pid>, are
// fsynced, then renamed over PATH (atomic on POSIX), and the folder is fsynced so the rename
// itself survives a power loss. Used for packed shards, CLI outputs and checkpoints.
#pragma once

#include <cstdint>
#include <string>

namespace vdm {

void write_file_atomically(const std::string& path, const void* data, size_t size);
inline void write_file_atomically(const std::string& path, const std::string& text) {
  write_file_atomically(path, text.data(), text.size());
}
// fsync of a folder (after renames inside it).
void sync_directory(const std::string& dir);

}  // namespace vdm
