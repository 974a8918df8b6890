# CalcPlugin.cmake: the `Calc::sdk` target and `calc_add_plugin()`, for plugin authors.
#
# Included by CalcConfig.cmake (so `find_package(Calc)` provides both). It can also be included
# on its own, e.g. from the calc source tree, after setting CALC_INCLUDE_DIR to the folder that
# holds calc_plugin.h:
#
#   set(CALC_INCLUDE_DIR "${calc_source_dir}/include")
#   include("${calc_source_dir}/cmake/CalcPlugin.cmake")
#
# A plugin is a shared library the host loads with dlopen() from a plugin directory: any
# lib*.so file there. It must export exactly one symbol, plugin_entry (declared visible by the
# CALC_PLUGIN_ENTRY macro), so everything else is compiled with hidden visibility.

# Safe to include more than once (find_package(Calc) in several directories): the target is
# created once per directory scope and the function definition is simply repeated.

if(NOT CALC_INCLUDE_DIR)
  # Installed layout: <prefix>/lib/cmake/Calc/CalcPlugin.cmake -> <prefix>/include
  get_filename_component(CALC_INCLUDE_DIR "${CMAKE_CURRENT_LIST_DIR}/../../../include" ABSOLUTE)
endif()
if(NOT EXISTS "${CALC_INCLUDE_DIR}/calc_plugin.h")
  message(FATAL_ERROR "CalcPlugin.cmake: no calc_plugin.h in CALC_INCLUDE_DIR (${CALC_INCLUDE_DIR})")
endif()

# Calc::sdk: what compiling against calc_plugin.h needs. Header-only (INTERFACE): the include
# directory and hidden visibility, so that only symbols marked CALC_PLUGIN_EXPORT are exported.
# calc_add_plugin() links it; link it yourself to build a plugin with add_library(... MODULE).
if(NOT TARGET Calc::sdk)
  add_library(Calc::sdk INTERFACE IMPORTED)
  set_target_properties(Calc::sdk PROPERTIES
    INTERFACE_INCLUDE_DIRECTORIES "${CALC_INCLUDE_DIR}"
    # GCC and Clang spell it the same way; other compilers (MSVC) hide symbols by default.
    INTERFACE_COMPILE_OPTIONS
      "$<$<COMPILE_LANG_AND_ID:C,GNU,Clang,AppleClang>:-fvisibility=hidden>;$<$<COMPILE_LANG_AND_ID:CXX,GNU,Clang,AppleClang>:-fvisibility=hidden;-fvisibility-inlines-hidden>")
endif()

# calc_add_plugin(<name> SOURCES <src>... [OUTPUT_DIRECTORY <dir>])
#
# Builds the calc plugin <name> from C (or C++) sources as a loadable module named
# lib<name>.so (the platform's shared-library suffix elsewhere), which is what the host looks
# for in a plugin directory. The target is called <name>; add sources, definitions or libraries
# to it as usual. It is built:
#   - as a MODULE library: dlopen-able, never linked against, no soname;
#   - position independent, with hidden visibility (C and C++), and linked so that
#     plugin_entry is the only exported symbol even when C++ template instantiations from the
#     standard library would default to visible (a version script on ELF platforms, an
#     exported-symbols list on Apple);
#   - C sources as C99 without extensions (the language calc_plugin.h is written for);
#   - linked with the maths library (libm) where the platform has a separate one.
# OUTPUT_DIRECTORY puts the library in <dir> (for every configuration), e.g. one plugin folder
# for several plugins; by default it goes where CMake puts libraries.
function(calc_add_plugin name)
  cmake_parse_arguments(PARSE_ARGV 1 arg "" "OUTPUT_DIRECTORY" "SOURCES")
  if(arg_UNPARSED_ARGUMENTS)
    message(FATAL_ERROR "calc_add_plugin(${name}): unknown arguments: ${arg_UNPARSED_ARGUMENTS}")
  endif()
  if(NOT arg_SOURCES)
    message(FATAL_ERROR "calc_add_plugin(${name}): SOURCES is required")
  endif()

  add_library(${name} MODULE ${arg_SOURCES})
  target_link_libraries(${name} PRIVATE Calc::sdk)
  set_target_properties(${name} PROPERTIES
    # lib<name>.so whatever the target name or the project's settings.
    OUTPUT_NAME "${name}"
    PREFIX "lib"
    SUFFIX "${CMAKE_SHARED_LIBRARY_SUFFIX}"
    POSITION_INDEPENDENT_CODE ON
    C_STANDARD 99
    C_STANDARD_REQUIRED ON
    C_EXTENSIONS OFF
    C_VISIBILITY_PRESET hidden
    CXX_VISIBILITY_PRESET hidden
    VISIBILITY_INLINES_HIDDEN ON)
  if(arg_OUTPUT_DIRECTORY)
    # LIBRARY_OUTPUT_DIRECTORY with a generator expression is used as is by multi-config
    # generators too (no per-configuration subfolder).
    set_target_properties(${name} PROPERTIES
      LIBRARY_OUTPUT_DIRECTORY "$<1:${arg_OUTPUT_DIRECTORY}>")
  endif()
  # Export plugin_entry and nothing else.
  if(APPLE)
    target_link_options(${name} PRIVATE "LINKER:-exported_symbol,_plugin_entry")
  elseif(UNIX)
    set(map "${CMAKE_BINARY_DIR}/CalcPlugin/exports.map")
    if(NOT EXISTS "${map}")
      file(WRITE "${map}"
        "/* Linker version script written by calc_add_plugin(): export plugin_entry only. */\n"
        "{\n  global:\n    plugin_entry;\n  local:\n    *;\n};\n")
    endif()
    target_link_options(${name} PRIVATE "LINKER:--version-script=${map}")
    set_property(TARGET ${name} APPEND PROPERTY LINK_DEPENDS "${map}")
  endif()
  # sqrt(), pow() and friends live in a separate libm on Linux and the BSDs, not on macOS or
  # Windows.
  if(UNIX AND NOT APPLE)
    target_link_libraries(${name} PRIVATE m)
  endif()
endfunction()
