#include "cli_args.h"

#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <ctime>

namespace ramp::cli {

bool Args::parse(const std::vector<std::string>& argv, const std::set<std::string>& options,
                 const std::set<std::string>& flags) {
  for (size_t i = 0; i < argv.size(); ++i) {
    const std::string& word = argv[i];
    if (word.rfind("--", 0) != 0) {
      error_ = "unexpected argument '" + word + "'";
      return false;
    }
    std::string name = word.substr(2);
    std::string value;
    const size_t equals = name.find('=');
    const bool inline_value = equals != std::string::npos;
    if (inline_value) {
      value = name.substr(equals + 1);
      name = name.substr(0, equals);
    }
    if (flags.count(name)) {
      if (inline_value) {
        error_ = "--" + name + " takes no value";
        return false;
      }
      values_[name] = "1";
    } else if (options.count(name)) {
      if (!inline_value) {
        if (i + 1 >= argv.size()) {
          error_ = "--" + name + " needs a value";
          return false;
        }
        value = argv[++i];
      }
      values_[name] = value;
    } else {
      error_ = "unknown option --" + name;
      return false;
    }
  }
  return true;
}

std::string Args::text(const std::string& name, const std::string& fallback) const {
  const auto it = values_.find(name);
  return it == values_.end() ? fallback : it->second;
}

bool Args::integer(const std::string& name, int64_t fallback, int64_t min, int64_t max,
                   int64_t* out) {
  const auto it = values_.find(name);
  if (it == values_.end()) {
    *out = fallback;
    return true;
  }
  const std::string& value = it->second;
  int64_t parsed = 0;
  const auto [end, error] = std::from_chars(value.data(), value.data() + value.size(), parsed);
  if (error != std::errc() || end != value.data() + value.size() || parsed < min || parsed > max) {
    error_ = "--" + name + " = '" + value + "' is not an integer in [" + std::to_string(min) +
             ", " + std::to_string(max) + "]";
    return false;
  }
  *out = parsed;
  return true;
}

std::string utc_now() {
  const std::time_t now = std::time(nullptr);
  std::tm utc{};
  gmtime_r(&now, &utc);
  char buffer[32];
  std::strftime(buffer, sizeof(buffer), "%Y-%m-%dT%H:%M:%SZ", &utc);
  return buffer;
}

std::string git_commit() {
  if (const char* env = std::getenv("RAMP_GIT_COMMIT"); env != nullptr && *env != '\0') return env;
  std::string commit;
  if (FILE* pipe = popen("git rev-parse HEAD 2>/dev/null", "r")) {
    char buffer[64] = {};
    if (std::fgets(buffer, sizeof(buffer), pipe) != nullptr) commit = buffer;
    pclose(pipe);
  }
  while (!commit.empty() && (commit.back() == '\n' || commit.back() == '\r')) commit.pop_back();
  return commit.empty() ? "unknown" : commit;
}

std::string joined_command(const char* name, const std::vector<std::string>& argv) {
  std::string text = std::string("ramp ") + name;
  for (const std::string& word : argv) text += " " + word;
  return text;
}

}  // namespace ramp::cli
