// Replays a fuzz target's corpus without libFuzzer, so that every fuzz target
// also runs as a plain test under `bazel test`.
//
// Usage: <binary> PATH...
// Each PATH is a file or a directory (searched recursively). When no PATH is
// given, the directories in $NBD_FUZZ_CORPUS (colon-separated) are used.
// Every regular file found is read and passed to LLVMFuzzerTestOneInput once.
// Exits non-zero when no input at all was found, so an empty or misnamed
// corpus cannot pass silently.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>
#include <system_error>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);
extern "C" int LLVMFuzzerInitialize(int* argc, char*** argv)
    __attribute__((weak));

namespace {

namespace fs = std::filesystem;

// Appends every regular file under `root` (or `root` itself) to `out`.
bool CollectInputs(const fs::path& root, std::vector<fs::path>& out) {
  std::error_code ec;
  if (fs::is_regular_file(root, ec)) {
    out.push_back(root);
    return true;
  }
  if (!fs::is_directory(root, ec)) {
    std::fprintf(stderr, "replay: no such file or directory: %s\n",
                 root.c_str());
    return false;
  }
  const auto options = fs::directory_options::follow_directory_symlink;
  for (fs::recursive_directory_iterator it(root, options, ec), end;
       !ec && it != end; it.increment(ec)) {
    if (fs::is_regular_file(it->path(), ec)) out.push_back(it->path());
  }
  if (ec) {
    std::fprintf(stderr, "replay: cannot list %s: %s\n", root.c_str(),
                 ec.message().c_str());
    return false;
  }
  return true;
}

bool ReadFile(const fs::path& path, std::vector<uint8_t>& bytes) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return false;
  bytes.assign(std::istreambuf_iterator<char>(in),
               std::istreambuf_iterator<char>());
  return !in.bad();
}

std::vector<std::string> RootsFromEnv() {
  std::vector<std::string> roots;
  const char* env = std::getenv("NBD_FUZZ_CORPUS");
  if (env == nullptr) return roots;
  std::string value(env);
  size_t start = 0;
  while (start <= value.size()) {
    size_t end = value.find(':', start);
    if (end == std::string::npos) end = value.size();
    if (end > start) roots.push_back(value.substr(start, end - start));
    start = end + 1;
  }
  return roots;
}

}  // namespace

int main(int argc, char** argv) {
  if (LLVMFuzzerInitialize != nullptr) LLVMFuzzerInitialize(&argc, &argv);

  std::vector<std::string> roots(argv + 1, argv + argc);
  if (roots.empty()) roots = RootsFromEnv();
  if (roots.empty()) {
    std::fprintf(stderr, "usage: %s FILE_OR_DIR... (or set NBD_FUZZ_CORPUS)\n",
                 argv[0]);
    return 2;
  }

  std::vector<fs::path> inputs;
  bool ok = true;
  for (const std::string& root : roots) ok &= CollectInputs(root, inputs);
  std::sort(inputs.begin(), inputs.end());

  std::vector<uint8_t> bytes;
  size_t replayed = 0;
  for (const fs::path& input : inputs) {
    if (!ReadFile(input, bytes)) {
      std::fprintf(stderr, "replay: cannot read %s\n", input.c_str());
      ok = false;
      continue;
    }
    // Like libFuzzer, hand over an exactly-sized heap copy (never a null
    // pointer, even for empty inputs) so that AddressSanitizer catches reads
    // past the end.
    std::unique_ptr<uint8_t[]> copy(new uint8_t[bytes.size()]);
    std::copy(bytes.begin(), bytes.end(), copy.get());
    LLVMFuzzerTestOneInput(copy.get(), bytes.size());
    ++replayed;
  }

  std::printf("replayed %zu inputs\n", replayed);
  if (replayed == 0) {
    std::fprintf(stderr, "replay: no inputs found\n");
    return 1;
  }
  return ok ? 0 : 1;
}
