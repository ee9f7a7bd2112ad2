#include "tools/export_folder.h"

#include <sys/stat.h>

#include <algorithm>
#include <cctype>
#include <cstring>
#include <fstream>
#include <string_view>
#include <vector>

namespace trainrr::cli {
namespace fs = std::filesystem;
namespace {

// Just enough JSON to read back the manifest export writes: the top-level object's "tensors" array and
// each of its objects' "file" string; every other value is checked for form and skipped.
class ManifestReader {
 public:
  explicit ManifestReader(std::string_view text) : s_(text) {}

  Result<std::set<std::string>> files() {
    std::set<std::string> out;
    bool tensors = false;
    ws();
    if (!eat('{')) return fail("it is not a JSON object");
    ws();
    for (bool first = true; !eat('}'); first = false) {
      if (!first && !eat(',')) return fail("expected ',' or '}'");
      std::string key;
      if (!(ws(), string(key)) || !(ws(), eat(':'))) return fail("expected a key");
      ws();
      if (key == "tensors") {
        tensors = true;
        if (!tensor_files(out)) return fail("its \"tensors\" are not a list of objects with a \"file\"");
      } else if (!skip(0)) {
        return fail("malformed value of \"" + key + "\"");
      }
      ws();
    }
    ws();
    if (pos_ != s_.size()) return fail("text after the object");
    if (!tensors) return fail("it has no \"tensors\"");
    return out;
  }

 private:
  static constexpr int kMaxDepth = 32;

  Error fail(const std::string& why) const {
    return Error{"not a manifest of trainrr export (" + why + " at byte " + std::to_string(pos_) + ")"};
  }
  void ws() {
    while (pos_ < s_.size() && (s_[pos_] == ' ' || s_[pos_] == '\n' || s_[pos_] == '\r' || s_[pos_] == '\t'))
      ++pos_;
  }
  bool eat(char c) {
    if (pos_ < s_.size() && s_[pos_] == c) return ++pos_, true;
    return false;
  }

  // A string; \u escapes are kept as written (no file name export writes has one).
  bool string(std::string& out) {
    if (!eat('"')) return false;
    while (pos_ < s_.size()) {
      const char c = s_[pos_++];
      if (c == '"') return true;
      if (static_cast<unsigned char>(c) < 0x20) return false;
      if (c != '\\') {
        out += c;
        continue;
      }
      if (pos_ >= s_.size()) return false;
      const char e = s_[pos_++];
      const char* plain = std::strchr("\"\\/", e);
      if (plain && e) {
        out += e;
      } else if (e == 'u') {
        if (pos_ + 4 > s_.size()) return false;
        for (size_t i = 0; i < 4; ++i)
          if (!std::isxdigit(static_cast<unsigned char>(s_[pos_ + i]))) return false;
        out += "\\u" + std::string(s_.substr(pos_, 4));
        pos_ += 4;
      } else if (e && std::strchr("bfnrt", e)) {
        out += '\\';
        out += e;
      } else {
        return false;
      }
    }
    return false;
  }

  bool tensor_files(std::set<std::string>& out) {
    if (!eat('[')) return false;
    ws();
    for (bool first = true; !eat(']'); first = false) {
      if (!first && !eat(',')) return false;
      ws();
      if (!eat('{')) return false;
      bool has_file = false;
      ws();
      for (bool first_key = true; !eat('}'); first_key = false) {
        if (!first_key && !eat(',')) return false;
        std::string key;
        if (!(ws(), string(key)) || !(ws(), eat(':'))) return false;
        ws();
        if (key == "file") {
          std::string file;
          if (!string(file)) return false;
          out.insert(std::move(file));
          has_file = true;
        } else if (!skip(2)) {
          return false;
        }
        ws();
      }
      if (!has_file) return false;
      ws();
    }
    return true;
  }

  bool skip(int depth) {
    if (depth > kMaxDepth || pos_ >= s_.size()) return false;
    const char c = s_[pos_];
    if (c == '"') {
      std::string ignored;
      return string(ignored);
    }
    if (c == '{' || c == '[') {
      const char close = c == '{' ? '}' : ']';
      ++pos_;
      ws();
      for (bool first = true; !eat(close); first = false) {
        if (!first && !eat(',')) return false;
        ws();
        if (c == '{') {
          std::string key;
          if (!string(key) || !(ws(), eat(':'))) return false;
          ws();
        }
        if (!skip(depth + 1)) return false;
        ws();
      }
      return true;
    }
    for (std::string_view word : {"true", "false", "null"})
      if (s_.substr(pos_, word.size()) == word) return pos_ += word.size(), true;
    const size_t start = pos_;
    while (pos_ < s_.size() && std::strchr("+-0123456789.eE", s_[pos_]) && s_[pos_]) ++pos_;
    return pos_ > start;
  }

  std::string_view s_;
  size_t pos_ = 0;
};

// An entry of an earlier export: a regular file, never a link, folder or device.
bool is_plain_file(const fs::directory_entry& e) {
  std::error_code ec;
  return e.symlink_status(ec).type() == fs::file_type::regular;
}

// Whether `trace` is `folder` or lies inside it, by path or as a hard link to one of its files.
bool holds_trace(const fs::path& folder, const std::vector<fs::directory_entry>& entries,
                 const std::string& trace) {
  struct stat ts {};
  if (::stat(trace.c_str(), &ts) != 0) return false;  // no such file: none to lose
  std::error_code ec;
  const fs::path t = fs::weakly_canonical(fs::absolute(trace, ec), ec);
  const fs::path f = fs::weakly_canonical(folder, ec);
  if (!ec && !t.empty() && std::mismatch(f.begin(), f.end(), t.begin(), t.end()).first == f.end()) return true;
  for (const auto& e : entries) {
    struct stat es {};
    if (::lstat(e.path().c_str(), &es) == 0 && es.st_dev == ts.st_dev && es.st_ino == ts.st_ino) return true;
  }
  return false;
}

}  // namespace

Result<std::set<std::string>> manifest_files(const std::string& manifest_text) {
  if (!std::string_view(manifest_text).starts_with("{\"trace\":"))
    return Error{"not a manifest of trainrr export (it does not start with {\"trace\":)"};
  return ManifestReader(manifest_text).files();
}

Status check_export_target(const fs::path& target, const std::string& trace) {
  std::error_code ec;
  const fs::file_type type = fs::symlink_status(target, ec).type();
  if (type == fs::file_type::not_found) return {};
  if (type != fs::file_type::directory) return Error{target.string() + ": exists and is not a folder"};
  std::vector<fs::directory_entry> entries;
  for (fs::directory_iterator it(target, ec), end; !ec && it != end; it.increment(ec)) entries.push_back(*it);
  if (ec) return Error{target.string() + ": cannot list the folder: " + ec.message()};
  std::sort(entries.begin(), entries.end(), [](const auto& a, const auto& b) { return a.path() < b.path(); });
  if (holds_trace(target, entries, trace))
    return Error{target.string() + ": holds the trace being read (" + trace +
                 "); refusing to replace the folder (choose another -o)"};
  if (entries.empty()) return {};

  const fs::path manifest = target / "manifest.json";
  const auto refuse = [&](const std::string& why) {
    return Error{target.string() + ": exists and is not an earlier export (" + why +
                 "); refusing to replace it (remove it or choose another -o)"};
  };
  if (fs::symlink_status(manifest, ec).type() != fs::file_type::regular)
    return refuse("it has no manifest.json from trainrr export");
  // A manifest is a few MiB at most (the permutation of the data set's rows): a bigger file is not one.
  constexpr uintmax_t kMaxManifestBytes = uintmax_t{1} << 30;
  if (fs::file_size(manifest, ec) > kMaxManifestBytes || ec)
    return refuse("its manifest.json is not one from trainrr export");
  std::ifstream in(manifest, std::ios::binary);
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  auto listed = manifest_files(text);
  if (!listed) return refuse("its manifest.json is " + listed.error().message);
  for (const auto& e : entries) {
    const std::string name = e.path().filename().string();
    if (name == "manifest.json") continue;
    if (listed->count(name) && name.ends_with(".npy") && is_plain_file(e)) continue;
    return Error{
        target.string() + ": holds " + name +
        ", which trainrr export did not write there (its manifest.json lists no such file); refusing "
        "to replace the folder, as " +
        name + " would be lost (move it out, or choose another -o)"};
  }
  return {};
}

Status put_export_in_place(const fs::path& staging, const fs::path& target, const std::string& trace) {
  std::error_code ec;
  fs::path earlier;
  if (fs::symlink_status(target, ec).type() != fs::file_type::not_found) {
    earlier = staging.string() + ".earlier";
    fs::rename(target, earlier, ec);
    if (ec) return Error{target.string() + ": cannot move the earlier export aside: " + ec.message()};
    // What was checked before the export was written may have changed since: checked again where no one
    // else writes.
    if (Status s = check_export_target(earlier, trace); !s) {
      std::error_code back;
      fs::rename(earlier, target, back);
      std::string message = s.error().message;
      if (message.starts_with(earlier.string())) message.replace(0, earlier.string().size(), target.string());
      return Error{message};
    }
  }
  fs::rename(staging, target, ec);
  if (ec) {
    std::error_code back;
    if (!earlier.empty()) fs::rename(earlier, target, back);
    return Error{target.string() + ": cannot rename the export into place: " + ec.message()};
  }
  if (!earlier.empty()) fs::remove_all(earlier, ec);
  return {};
}

}  // namespace trainrr::cli
