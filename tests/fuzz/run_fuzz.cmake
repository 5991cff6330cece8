# Run one libFuzzer target for SECONDS on a fresh copy of its seed corpus
# (the seeds in the source tree are never changed). Called by CTest:
#   cmake -DFUZZER=... -DCORPUS=... -DDICT=... -DWORK=... -DSECONDS=... -P run_fuzz.cmake
# SECONDS 0: only run the seeds once. A crash, leak or sanitizer report
# fails the test; the reproducer is left in WORK/artifacts/.
foreach(v FUZZER CORPUS WORK SECONDS)
  if(NOT DEFINED ${v})
    message(FATAL_ERROR "run_fuzz.cmake: ${v} not set")
  endif()
endforeach()

file(REMOVE_RECURSE ${WORK})
file(MAKE_DIRECTORY ${WORK}/corpus ${WORK}/artifacts)
file(GLOB _seeds LIST_DIRECTORIES false ${CORPUS}/*)
if(_seeds)
  file(COPY ${_seeds} DESTINATION ${WORK}/corpus)
endif()

set(ENV{ASAN_OPTIONS} "detect_leaks=1:$ENV{ASAN_OPTIONS}")
set(ENV{UBSAN_OPTIONS} "print_stacktrace=1:halt_on_error=1:$ENV{UBSAN_OPTIONS}")

set(_args -timeout=25 -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix=${WORK}/artifacts/)
if(DICT AND EXISTS ${DICT})
  list(APPEND _args -dict=${DICT})
endif()
if(SECONDS GREATER 0)
  list(APPEND _args -max_total_time=${SECONDS})
else()
  list(APPEND _args -runs=0)
endif()

get_filename_component(_name ${FUZZER} NAME)
message(STATUS "${_name} ${_args} ${WORK}/corpus")
execute_process(COMMAND ${FUZZER} ${_args} ${WORK}/corpus RESULT_VARIABLE _rc)
if(NOT _rc EQUAL 0)
  file(GLOB _found ${WORK}/artifacts/*)
  message(FATAL_ERROR "${_name} failed (${_rc}); reproducer: ${_found}\n"
                      "Keep it as tests/fuzz/regressions/${_name}-<short-name>.")
endif()
