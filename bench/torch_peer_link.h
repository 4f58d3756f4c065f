// Runs bench/peers/torch_peer.py (torch._grouped_mm) on the cases of a `ramp bench` run: the
// routing of every case is written to a JSON file the script reads, so both sides time the
// identical expert ids.
#pragma once

#include <string>
#include <vector>

#include "bench/bench.h"
#include "core/json.h"
#include "ramp/status.h"
#include "workloads/routing.h"

namespace ramp::bench {

struct TorchPeerCase {
  CaseSpec spec;
  const workloads::Routing* routing = nullptr;
};

struct TorchPeerRun {
  bool ran = false;       // the script started and wrote its result file
  std::string note;       // why it did not run, or its top-level error
  json::Value result;     // the script's JSON (object with "cases": [...])
};

// Finds the script: the explicit path, else bench/peers/torch_peer.py under the working
// directory, else the one in the source tree this binary was configured from.
std::string find_torch_peer_script(const std::string& explicit_path);

// Never fails the bench: every problem ends up in run->note.
void run_torch_peer(const BenchOptions& options, const std::vector<TorchPeerCase>& cases,
                    TorchPeerRun* run);

}  // namespace ramp::bench
