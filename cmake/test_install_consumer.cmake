# CTest script: install this build into a fresh prefix, then configure, build and run
# examples/consumer against it, as a user of the package would. Inputs (-D): RAMP_BUILD_DIR,
# RAMP_SOURCE_DIR, WORK_DIR, GENERATOR, BUILD_TYPE, CXX_COMPILER, CUDA_ROOT (may be empty).
file(REMOVE_RECURSE ${WORK_DIR})
set(prefix ${WORK_DIR}/prefix)

function(run_step)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE result)
  if(NOT result EQUAL 0)
    list(JOIN ARGN " " command)
    message(FATAL_ERROR "failed (${result}): ${command}")
  endif()
endfunction()

run_step(${CMAKE_COMMAND} --install ${RAMP_BUILD_DIR} --prefix ${prefix} --config ${BUILD_TYPE})
set(configure_args -S ${RAMP_SOURCE_DIR}/examples/consumer -B ${WORK_DIR}/build
    -G ${GENERATOR} -DCMAKE_BUILD_TYPE=${BUILD_TYPE} -DCMAKE_CXX_COMPILER=${CXX_COMPILER}
    -DCMAKE_PREFIX_PATH=${prefix})
if(CUDA_ROOT)
  list(APPEND configure_args -DCUDAToolkit_ROOT=${CUDA_ROOT})
endif()
run_step(${CMAKE_COMMAND} ${configure_args})
run_step(${CMAKE_COMMAND} --build ${WORK_DIR}/build)
run_step(${WORK_DIR}/build/ramp_consumer)
