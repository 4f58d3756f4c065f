// A small argument reader for the `ramp` subcommands: --name value or --name=value, flags
// without a value, and one clear line for anything it does not know.
#pragma once

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <vector>

namespace ramp::cli {

class Args {
 public:
  // `options` take a value, `flags` do not. Fails on an unknown name or a missing value.
  bool parse(const std::vector<std::string>& argv, const std::set<std::string>& options,
             const std::set<std::string>& flags);
  const std::string& error() const { return error_; }

  bool has(const std::string& name) const { return values_.count(name) > 0; }
  std::string text(const std::string& name, const std::string& fallback) const;
  // Fails (returns false, sets error) when the value is not an integer in [min, max].
  bool integer(const std::string& name, int64_t fallback, int64_t min, int64_t max, int64_t* out);

 private:
  std::map<std::string, std::string> values_;
  std::string error_;
};

// Provenance of a result file: "2026-11-22T10:00:00Z", the commit ($RAMP_GIT_COMMIT, else
// `git rev-parse HEAD`, else "unknown"), and "ramp NAME ARGS..." as typed.
std::string utc_now();
std::string git_commit();
std::string joined_command(const char* name, const std::vector<std::string>& argv);

}  // namespace ramp::cli
