# Whether to build the CUDA backend (cuda/), decided before the libraries are declared.
#   TRAINRR_CUDA=AUTO (default): when nvcc is found (on PATH, in $CUDA_HOME/bin or /usr/local/cuda/bin),
#     except in sanitizer and fuzzing builds
#   TRAINRR_CUDA=ON: required (configuring fails without nvcc); OFF: never
# A build with the backend still starts and trains on a machine with no GPU and no driver: the CUDA runtime is
# linked statically and cuBLASLt is opened only when a run asks for the GPU.
set(TRAINRR_CUDA AUTO CACHE STRING "Build the CUDA backend: AUTO, ON or OFF")
set_property(CACHE TRAINRR_CUDA PROPERTY STRINGS AUTO ON OFF)
set(TRAINRR_BUILD_CUDA OFF)

if(TRAINRR_CUDA STREQUAL "OFF")
  message(STATUS "CUDA backend: not built (TRAINRR_CUDA=OFF)")
elseif(TRAINRR_CUDA STREQUAL "AUTO" AND (TRAINRR_SANITIZE OR TRAINRR_FUZZ))
  message(STATUS "CUDA backend: not built in a sanitizer or fuzzing build")
else()
  if(NOT DEFINED CMAKE_CUDA_COMPILER AND NOT DEFINED ENV{CUDACXX})
    find_program(TRAINRR_NVCC nvcc HINTS ENV CUDA_HOME PATH_SUFFIXES bin PATHS /usr/local/cuda/bin)
    if(TRAINRR_NVCC)
      set(CMAKE_CUDA_COMPILER ${TRAINRR_NVCC})
    endif()
  endif()
  include(CheckLanguage)
  check_language(CUDA)
  if(NOT CMAKE_CUDA_COMPILER)
    if(TRAINRR_CUDA STREQUAL "ON")
      message(FATAL_ERROR "TRAINRR_CUDA=ON: no nvcc found (put the CUDA Toolkit's bin on PATH or set CUDA_HOME)")
    endif()
    message(STATUS "CUDA backend: not built: no nvcc found")
  else()
    # The H200 (sm_90) unless the build says otherwise; with no value CMake would take nvcc's default, sm_75.
    if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES)
      set(CMAKE_CUDA_ARCHITECTURES 90)
    endif()
    # One CUDA runtime, the static one (the binary then needs no libcudart.so where it runs), linked by name
    # (cuda/CMakeLists.txt: CUDA::cudart_static) rather than by CMake's CUDA link rule: the executables are
    # linked by the C++ compiler, which would get -lcudart_static without its folder.
    set(CMAKE_CUDA_RUNTIME_LIBRARY None)
    if(NOT DEFINED CMAKE_CUDA_HOST_COMPILER)
      set(CMAKE_CUDA_HOST_COMPILER ${CMAKE_CXX_COMPILER})
    endif()
    enable_language(CUDA)
    # The host compiler's own include folder: a dependency found there (Random123, cblas.h) would otherwise
    # be passed to nvcc as -I/usr/include, which breaks libstdc++'s #include_next <math.h>.
    list(APPEND CMAKE_CUDA_IMPLICIT_INCLUDE_DIRECTORIES /usr/include)
    # CMake 3.25 does not know that nvcc 13 compiles C++20 (and the engine's targets ask for it).
    if(NOT DEFINED CMAKE_CUDA20_STANDARD_COMPILE_OPTION OR CMAKE_CUDA20_STANDARD_COMPILE_OPTION STREQUAL "")
      set(CMAKE_CUDA20_STANDARD_COMPILE_OPTION "-std=c++20")
      set(CMAKE_CUDA20_EXTENSION_COMPILE_OPTION "-std=c++20")
    endif()
    set(CMAKE_CUDA_STANDARD 20)
    set(CMAKE_CUDA_STANDARD_REQUIRED ON)
    set(CMAKE_CUDA_EXTENSIONS OFF)
    find_package(CUDAToolkit REQUIRED)
    set(TRAINRR_BUILD_CUDA ON)
    message(STATUS "CUDA backend: built with nvcc ${CMAKE_CUDA_COMPILER_VERSION} for sm_${CMAKE_CUDA_ARCHITECTURES}, "
                   "CUDA Toolkit ${CUDAToolkit_VERSION} (${CUDAToolkit_INCLUDE_DIRS})")
  endif()
endif()
