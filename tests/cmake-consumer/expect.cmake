# Runs a command and checks its exit status, stdout and stderr; used by the ctest tests.
#
#   cmake -DEXPECT_RESULT=<status> -DEXPECT_STDOUT=<lines> -DEXPECT_STDERR=<regex>
#         -P expect.cmake -- <program> <args>...
#
# EXPECT_STDOUT is the exact stdout with lines separated by `|` (empty: no output at all).
# EXPECT_STDERR is a regular expression the whole of stderr must match (empty: no output).

# The command follows `--`, which stops CMake from parsing it (CMAKE_ARGV<n> still has it).
set(command "")
set(in_command FALSE)
math(EXPR last "${CMAKE_ARGC} - 1")
foreach(i RANGE 1 ${last})
  if(in_command)
    list(APPEND command "${CMAKE_ARGV${i}}")
  elseif(CMAKE_ARGV${i} STREQUAL "--")
    set(in_command TRUE)
  endif()
endforeach()
if(NOT command)
  message(FATAL_ERROR "expect.cmake: no command after --")
endif()

execute_process(COMMAND ${command}
  RESULT_VARIABLE result OUTPUT_VARIABLE stdout ERROR_VARIABLE stderr)

string(REPLACE "|" "\n" expected_stdout "${EXPECT_STDOUT}")
if(NOT expected_stdout STREQUAL "")
  string(APPEND expected_stdout "\n")
endif()
string(REGEX REPLACE "\n$" "" stderr_line "${stderr}")

set(problems "")
if(NOT result STREQUAL EXPECT_RESULT)
  string(APPEND problems "exit status ${result}, expected ${EXPECT_RESULT}\n")
endif()
if(NOT stdout STREQUAL expected_stdout)
  string(APPEND problems "stdout:\n${stdout}expected:\n${expected_stdout}")
endif()
if(EXPECT_STDERR STREQUAL "")
  if(NOT stderr STREQUAL "")
    string(APPEND problems "unexpected stderr:\n${stderr}")
  endif()
elseif(NOT stderr_line MATCHES "^${EXPECT_STDERR}$")
  string(APPEND problems "stderr does not match ^${EXPECT_STDERR}$:\n${stderr}")
endif()

list(JOIN command " " shown)
if(problems)
  message(FATAL_ERROR "${shown}\n${problems}")
endif()
message(STATUS "ok: ${shown}")
