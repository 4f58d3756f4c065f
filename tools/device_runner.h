// The CUDA side of `ramp run`: copies a problem to the GPU, runs it through the CUDA backend
// and copies the output back into data.out. Only built with the CUDA backend.
#pragma once

#include <vector>

#include "layer_problem.h"
#include "ramp/status.h"

namespace ramp::cli {

bool device_present();

// Runs `repeats` times (after one warm-up) and appends each run's time in ms to times_ms.
Status run_problem_on_device(const Problem& problem, ProblemData& data, int repeats,
                             std::vector<double>* times_ms);

}  // namespace ramp::cli
