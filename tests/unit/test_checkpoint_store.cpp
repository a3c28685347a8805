// Tests of the checkpoint store on real files: byte-exact round trips, verification of each kind
// of damage, fallback to an older checkpoint, retention, stale temporaries, and crashes injected
// into a forked child at the two points where a commit can be cut short.
#include <gtest/gtest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "training/checkpoint_store.h"
#include "tests/test_support.h"

namespace fs = std::filesystem;
using vdm::CheckpointError;
using vdm::CheckpointStore;
using vdm::CheckpointStoreOptions;

namespace {

// A fresh directory per test, removed afterwards.
CheckpointStoreOptions opts(const std::string& dir, int64_t keep_last = 3, int64_t keep_every = 0) {
  CheckpointStoreOptions o;
  o.dir = dir;
  o.keep_last = keep_last;
  o.keep_every = keep_every;
  return o;
}

std::map<std::string, std::string> small_files(int64_t step) {
  return {{"model.pt", "model bytes of step " + std::to_string(step)},
          {"optim.pt", std::string("opt\0im\xff", 7) + std::to_string(step)}};
}

std::vector<int64_t> steps(const CheckpointStore& store) {
  std::vector<int64_t> out;
  for (const auto& c : store.list()) out.push_back(c.step);
  return out;
}

std::string read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

void write_raw(const fs::path& p, const std::string& bytes) {
  std::ofstream(p, std::ios::binary | std::ios::trunc) << bytes;
}

// Runs store.write(2, ...) in a forked child with the fault hook set; returns its wait status.
int write_in_crashing_child(const std::string& dir, const char* fault) {
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::setenv("VDM_FAULT_CHECKPOINT", fault, 1);
    try {
      CheckpointStore store(opts(dir));
      store.write(2, small_files(2));
    } catch (...) {
      ::_exit(2);
    }
    ::_exit(0);  // the hook did not fire
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  return status;
}

}  // namespace

TEST(CheckpointStore, RoundTripBinaryAndLargeFiles) {
  TempDir tmp;
  CheckpointStore store(opts(tmp.file("checkpoints")));
  ASSERT_TRUE(fs::is_directory(tmp.file("checkpoints")));
  std::string big(5 * 1024 * 1024, '\0');
  for (size_t i = 0; i < big.size(); ++i) big[i] = char((i * 2654435761u) >> 13);
  const std::map<std::string, std::string> files = {
      {"model.pt", big},
      {"rng.bin", std::string("\0\0\x01\0\xfe\xff\0", 7)},
      {"empty", ""},
      {"config.yaml", "a: 1\n"}};
  const std::string path = store.write(7, files);
  EXPECT_EQ(path, (fs::path(tmp.file("checkpoints")) / "step_00000007").string());
  EXPECT_EQ(read_file(fs::path(tmp.file("checkpoints")) / "latest"), "step_00000007\n");
  EXPECT_EQ(store.verify(path), "");
  const auto loaded = store.load(path);
  EXPECT_EQ(loaded.step, 7);
  EXPECT_EQ(loaded.path, path);
  EXPECT_EQ(loaded.files, files);
}

TEST(CheckpointStore, ListIsStepAscendingAndIgnoresOtherEntries) {
  TempDir tmp;
  CheckpointStore store(opts(tmp.file("checkpoints"), 10));
  for (int64_t s : {30, 5, 100000000, 12}) store.write(s, small_files(s));
  fs::create_directory(fs::path(tmp.file("checkpoints")) / "step_00000099");  // no manifest: incomplete
  fs::create_directory(fs::path(tmp.file("checkpoints")) / "step_7");
  fs::create_directory(fs::path(tmp.file("checkpoints")) / "other");
  EXPECT_EQ(steps(store), (std::vector<int64_t>{5, 12, 30, 100000000}));
  EXPECT_EQ(store.list().back().path, (fs::path(tmp.file("checkpoints")) / "step_100000000").string());
}

TEST(CheckpointStore, RewritingAStepReplacesIt) {
  TempDir tmp;
  CheckpointStore store(opts(tmp.file("checkpoints")));
  store.write(3, {{"a", "old"}, {"gone", "x"}});
  const auto path = store.write(3, {{"a", "new"}});
  EXPECT_EQ(store.load(path).files, (std::map<std::string, std::string>{{"a", "new"}}));
  EXPECT_EQ(steps(store), (std::vector<int64_t>{3}));
  EXPECT_EQ(store.remove_stale_temporaries(), 0);
}

TEST(CheckpointStore, VerifyDetectsTruncation) {
  TempDir tmp;
  CheckpointStore store(opts(tmp.file("checkpoints")));
  const auto path = store.write(1, {{"model.pt", std::string(2048, 'm')}});
  write_raw(fs::path(path) / "model.pt", std::string(1000, 'm'));
  EXPECT_EQ(store.verify(path), "model.pt: size 1000, manifest says 2048 (truncated)");
  try {
    store.load(path);
    FAIL() << "load of a truncated checkpoint did not throw";
  } catch (const CheckpointError& e) {
    EXPECT_EQ(std::string(e.what()), path + ": model.pt: size 1000, manifest says 2048 (truncated)");
  }
}

TEST(CheckpointStore, VerifyDetectsAFlippedBit) {
  TempDir tmp;
  CheckpointStore store(opts(tmp.file("checkpoints")));
  const auto path = store.write(1, small_files(1));
  const fs::path file = fs::path(path) / "optim.pt";
  std::string bytes = read_file(file);
  bytes[3] ^= 0x10;
  write_raw(file, bytes);
  const std::string reason = store.verify(path);
  EXPECT_EQ(reason.rfind("optim.pt: checksum mismatch (manifest ", 0), 0u) << reason;
  EXPECT_NE(reason.find(", file "), std::string::npos) << reason;
  EXPECT_THROW(store.load(path), CheckpointError);
}

TEST(CheckpointStore, VerifyDetectsMissingFileAndBadManifest) {
  TempDir tmp;
  CheckpointStore store(opts(tmp.file("checkpoints")));
  const auto path = store.write(1, small_files(1));
  fs::remove(fs::path(path) / "model.pt");
  EXPECT_EQ(store.verify(path), "model.pt: missing");

  const auto path2 = store.write(2, small_files(2));
  const fs::path manifest = fs::path(path2) / "manifest.json";
  write_raw(manifest, "{\"format_version\": 1, \"step\": 2, \"files\": [");
  EXPECT_EQ(store.verify(path2).rfind("manifest.json: ", 0), 0u) << store.verify(path2);
  write_raw(manifest, "{\"format_version\": 1, \"files\": []}");
  EXPECT_EQ(store.verify(path2).rfind("manifest.json: malformed", 0), 0u) << store.verify(path2);
  write_raw(manifest,
            R"({"format_version": 1, "step": 2, "files": [{"name": "../x", "size": 0, "crc32": "00000000"}]})");
  EXPECT_EQ(store.verify(path2), "manifest.json: bad file name '../x'");
  fs::remove(manifest);
  EXPECT_EQ(store.verify(path2), "manifest.json: missing");
  EXPECT_EQ(steps(store), (std::vector<int64_t>{1}));  // without a manifest it is not complete
}

TEST(CheckpointStore, LoadLatestValidFallsBackAndReports) {
  TempDir tmp;
  CheckpointStore store(opts(tmp.file("checkpoints")));
  EXPECT_FALSE(store.load_latest_valid().has_value());
  store.write(1, small_files(1));
  store.write(2, small_files(2));
  const auto newest = store.write(3, small_files(3));
  write_raw(fs::path(newest) / "model.pt", "garbage");
  std::vector<std::string> problems;
  const auto loaded = store.load_latest_valid(&problems);
  ASSERT_TRUE(loaded.has_value());
  EXPECT_EQ(loaded->step, 2);
  EXPECT_EQ(loaded->files, small_files(2));
  ASSERT_EQ(problems.size(), 1u);
  EXPECT_NE(problems[0].find(newest), std::string::npos) << problems[0];
  EXPECT_NE(problems[0].find("model.pt: size 7"), std::string::npos) << problems[0];

  for (const auto& c : store.list()) fs::remove(fs::path(c.path) / "optim.pt");
  problems.clear();
  EXPECT_FALSE(store.load_latest_valid(&problems).has_value());
  EXPECT_EQ(problems.size(), 3u);
}

TEST(CheckpointStore, RetentionKeepsLastAndMilestones) {
  TempDir tmp;
  CheckpointStore store(opts(tmp.file("checkpoints"), 2, 4));
  for (int64_t s = 1; s <= 10; ++s) store.write(s, small_files(s));
  EXPECT_EQ(steps(store), (std::vector<int64_t>{4, 8, 9, 10}));
  EXPECT_EQ(store.remove_stale_temporaries(), 0);  // pruning leaves no debris
}

TEST(CheckpointStore, PruneNeverDeletesWhatLatestNames) {
  TempDir tmp;
  CheckpointStore keep_all(opts(tmp.file("checkpoints"), 5));
  for (int64_t s = 1; s <= 3; ++s) keep_all.write(s, small_files(s));
  write_raw(fs::path(tmp.file("checkpoints")) / "latest", "step_00000002\n");  // e.g. a stale hint
  CheckpointStore keep_one(opts(tmp.file("checkpoints"), 1));
  keep_one.prune();
  EXPECT_EQ(steps(keep_one), (std::vector<int64_t>{2, 3}));
}

TEST(CheckpointStore, StaleTemporariesIgnoredThenRemoved) {
  TempDir tmp;
  CheckpointStore store(opts(tmp.file("checkpoints")));
  store.write(1, small_files(1));
  const fs::path stale = fs::path(tmp.file("checkpoints")) / ".step_00000002.tmp";
  fs::create_directory(stale);
  write_raw(stale / "manifest.json", "{}");
  fs::create_directory(fs::path(tmp.file("checkpoints")) / ".step_00000003.deleted.tmp");
  EXPECT_EQ(steps(store), (std::vector<int64_t>{1}));
  EXPECT_EQ(store.remove_stale_temporaries(), 2);
  EXPECT_FALSE(fs::exists(stale));
  EXPECT_EQ(steps(store), (std::vector<int64_t>{1}));
  EXPECT_EQ(store.remove_stale_temporaries(), 0);
}

TEST(CheckpointStore, BadFileNamesAndOptionsThrow) {
  TempDir tmp;
  CheckpointStore store(opts(tmp.file("checkpoints")));
  for (const std::string bad : {"a/b", "manifest.json", "", "..", "."})
    EXPECT_THROW(store.write(1, {{bad, "x"}}), CheckpointError) << bad;
  EXPECT_THROW(store.write(-1, {{"a", "x"}}), CheckpointError);
  EXPECT_TRUE(store.list().empty());
  EXPECT_THROW(CheckpointStore(opts(tmp.file("checkpoints"), 0)), CheckpointError);
  EXPECT_THROW(CheckpointStore(opts(tmp.file("checkpoints"), 1, -1)), CheckpointError);
}

TEST(CheckpointStore, CrashBeforeManifestLeavesPreviousCheckpoint) {
  TempDir tmp;
  CheckpointStore store(opts(tmp.file("checkpoints")));
  store.write(1, small_files(1));
  const int status = write_in_crashing_child(tmp.file("checkpoints"), "before_manifest");
  ASSERT_TRUE(WIFSIGNALED(status)) << "child exited with " << WEXITSTATUS(status);
  EXPECT_EQ(WTERMSIG(status), SIGKILL);
  EXPECT_TRUE(fs::exists(fs::path(tmp.file("checkpoints")) / ".step_00000002.tmp" / "model.pt"));
  EXPECT_EQ(steps(store), (std::vector<int64_t>{1}));
  const auto loaded = store.load_latest_valid();
  ASSERT_TRUE(loaded.has_value());
  EXPECT_EQ(loaded->step, 1);
  // A retry of the same step starts over from the leftover tmp folder.
  store.write(2, small_files(2));
  EXPECT_EQ(steps(store), (std::vector<int64_t>{1, 2}));
  EXPECT_EQ(store.remove_stale_temporaries(), 0);
}

TEST(CheckpointStore, CrashBeforeRenameLeavesPreviousCheckpoint) {
  TempDir tmp;
  CheckpointStore store(opts(tmp.file("checkpoints")));
  store.write(1, small_files(1));
  const int status = write_in_crashing_child(tmp.file("checkpoints"), "before_rename");
  ASSERT_TRUE(WIFSIGNALED(status)) << "child exited with " << WEXITSTATUS(status);
  EXPECT_EQ(WTERMSIG(status), SIGKILL);
  EXPECT_TRUE(fs::exists(fs::path(tmp.file("checkpoints")) / ".step_00000002.tmp" / "manifest.json"));
  EXPECT_EQ(steps(store), (std::vector<int64_t>{1}));
  const auto loaded = store.load_latest_valid();
  ASSERT_TRUE(loaded.has_value());
  EXPECT_EQ(loaded->step, 1);
  EXPECT_EQ(read_file(fs::path(tmp.file("checkpoints")) / "latest"), "step_00000001\n");
  EXPECT_EQ(store.remove_stale_temporaries(), 1);
  EXPECT_EQ(steps(store), (std::vector<int64_t>{1}));
}
