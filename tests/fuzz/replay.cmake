# Replay every crash reproducer in DIR once with its target: a file named
# fuzz_<target>-<short-name> (or <target>-<short-name>) goes to
# BINDIR/fuzz_<target>. Called by CTest:
#   cmake -DBINDIR=... -DDIR=... -P replay.cmake
# Fails when any of them still crashes, leaks or trips a sanitizer.
set(ENV{ASAN_OPTIONS} "detect_leaks=1:$ENV{ASAN_OPTIONS}")
set(ENV{UBSAN_OPTIONS} "print_stacktrace=1:halt_on_error=1:$ENV{UBSAN_OPTIONS}")

file(GLOB _files LIST_DIRECTORIES false ${DIR}/*)
list(SORT _files)
set(_failed "")
set(_n 0)
foreach(f ${_files})
  get_filename_component(_name ${f} NAME)
  if(NOT _name MATCHES "^(fuzz_)?([a-z0-9]+)-")
    continue()
  endif()
  set(_bin ${BINDIR}/fuzz_${CMAKE_MATCH_2})
  if(NOT EXISTS ${_bin})
    message(SEND_ERROR "${_name}: no target ${_bin}")
    list(APPEND _failed ${_name})
    continue()
  endif()
  math(EXPR _n "${_n} + 1")
  execute_process(COMMAND ${_bin} -timeout=25 ${f} RESULT_VARIABLE _rc
                  OUTPUT_VARIABLE _out ERROR_VARIABLE _out)
  if(_rc EQUAL 0)
    message(STATUS "ok      ${_name}")
  else()
    message("${_out}")
    message(STATUS "FAILED  ${_name}")
    list(APPEND _failed ${_name})
  endif()
endforeach()
message(STATUS "${_n} reproducers replayed")
if(_failed)
  message(FATAL_ERROR "still failing: ${_failed}")
endif()
