# Whether to build the Python module (python/), decided before the engine's libraries are declared: the
# module links them into a shared object, so they are then compiled as position-independent code.
#   TRAINRR_PYTHON=AUTO (default): when Python 3's development files, numpy and pybind11 are found
#   TRAINRR_PYTHON=ON: required (configuring fails without them); OFF: never
set(TRAINRR_PYTHON AUTO CACHE STRING "Build the Python module: AUTO, ON or OFF")
set_property(CACHE TRAINRR_PYTHON PROPERTY STRINGS AUTO ON OFF)
set(TRAINRR_BUILD_PYTHON OFF)

function(trainrr_python_missing why)
  if(TRAINRR_PYTHON STREQUAL "ON")
    message(FATAL_ERROR "TRAINRR_PYTHON=ON: ${why} (Debian: apt-get install python3-dev python3-numpy pybind11-dev)")
  endif()
  message(STATUS "Python module: not built: ${why}")
endfunction()

if(TRAINRR_PYTHON STREQUAL "OFF")
  message(STATUS "Python module: not built (TRAINRR_PYTHON=OFF)")
elseif(TRAINRR_PYTHON STREQUAL "AUTO" AND (TRAINRR_SANITIZE OR TRAINRR_FUZZ))
  # The interpreter itself is not built with the sanitizers, so the module could not load their runtime.
  message(STATUS "Python module: not built in a sanitizer or fuzzing build")
else()
  # The module is for the system's python3 (where `cmake --install` puts it), not whichever python3 comes
  # first on PATH, unless Python3_EXECUTABLE says otherwise.
  if(NOT DEFINED Python3_EXECUTABLE AND EXISTS /usr/bin/python3)
    set(Python3_EXECUTABLE /usr/bin/python3 CACHE FILEPATH "The Python the module is built for")
  endif()
  find_package(Python3 COMPONENTS Interpreter Development.Module)
  if(NOT Python3_FOUND)
    trainrr_python_missing("no Python 3 with its development files")
  else()
    execute_process(COMMAND ${Python3_EXECUTABLE} -c "import numpy" RESULT_VARIABLE numpy_missing
                    OUTPUT_QUIET ERROR_QUIET)
    find_package(pybind11 CONFIG QUIET)
    if(numpy_missing)
      trainrr_python_missing("${Python3_EXECUTABLE} has no numpy")
    elseif(NOT pybind11_FOUND)
      trainrr_python_missing("pybind11 not found")
    else()
      set(TRAINRR_BUILD_PYTHON ON)
      message(STATUS "Python module: built for ${Python3_EXECUTABLE} (${Python3_VERSION}), pybind11 ${pybind11_VERSION}")
      set(CMAKE_POSITION_INDEPENDENT_CODE ON)
      # -fPIC alone would let every global function be interposed at load time, which stops GCC inlining
      # across them; the engine's functions are never interposed, so the code stays as -fPIE builds it.
      if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU")
        add_compile_options($<$<COMPILE_LANGUAGE:CXX>:-fno-semantic-interposition>)
      endif()
    endif()
  endif()
endif()
