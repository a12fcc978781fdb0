# Included from the top-level CMakeLists.txt (enable_language must run in
# the directory common to every target that links CUDA code). Sets
# TESSERA_CUDA_ENABLED and, when it is ON, the imported targets CUDNN::cudnn
# and (if found) NCCL::nccl beside CUDAToolkit's CUDA::cudart_static and
# CUDA::cublas.
#
# TESSERA_WITH_CUDA: AUTO builds the backend when nvcc and cuDNN are found and
# says why not otherwise; ON makes their absence an error; OFF skips the
# search (a machine without nvcc never pays for it).
set(TESSERA_CUDA_ENABLED OFF)
set(TESSERA_NCCL_ENABLED OFF)
if(NOT TESSERA_WITH_CUDA MATCHES "^(AUTO|ON|OFF)$")
  message(FATAL_ERROR "TESSERA_WITH_CUDA is '${TESSERA_WITH_CUDA}': use AUTO, ON or OFF")
endif()

macro(_tessera_cuda_missing why)
  if(TESSERA_WITH_CUDA STREQUAL "ON")
    message(FATAL_ERROR "TESSERA_WITH_CUDA=ON but ${why}")
  endif()
  message(STATUS "CUDA backend: not built (${why})")
endmacro()

if(NOT TESSERA_WITH_CUDA STREQUAL "OFF")
  # "native" would ask the build machine's GPU, and CI has none: name the
  # architectures (A100 and H100 class).
  if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES)
    set(CMAKE_CUDA_ARCHITECTURES 80 90)
  endif()
  # nvcc is in /usr/local/cuda on our machines even when PATH lacks it.
  if(NOT DEFINED CMAKE_CUDA_COMPILER AND NOT DEFINED ENV{CUDACXX} AND EXISTS /usr/local/cuda/bin/nvcc)
    find_program(_tessera_nvcc nvcc)
    if(NOT _tessera_nvcc)
      set(CMAKE_CUDA_COMPILER /usr/local/cuda/bin/nvcc)
    endif()
  endif()
  include(CheckLanguage)
  # check_language keeps a CMAKE_CUDA_COMPILER given on the command line
  # without trying it, so a path that does not exist is checked here.
  if(DEFINED CMAKE_CUDA_COMPILER AND IS_ABSOLUTE "${CMAKE_CUDA_COMPILER}" AND NOT EXISTS "${CMAKE_CUDA_COMPILER}")
    _tessera_cuda_missing("CMAKE_CUDA_COMPILER=${CMAKE_CUDA_COMPILER} does not exist")
  else()
    check_language(CUDA)
    if(NOT CMAKE_CUDA_COMPILER)
      _tessera_cuda_missing("no CUDA compiler (nvcc) was found")
    else()
      enable_language(CUDA)
      # CMake 3.25 knows no C++20 dialect for nvcc (12.0 and later have it);
      # without these, a target built with CMAKE_CXX_STANDARD 20 fails to
      # generate ("requires the language dialect CUDA20").
      if(CMAKE_CUDA_COMPILER_VERSION VERSION_GREATER_EQUAL 12.0 AND NOT DEFINED CMAKE_CUDA20_STANDARD_COMPILE_OPTION)
        set(CMAKE_CUDA20_STANDARD_COMPILE_OPTION "-std=c++20")
        set(CMAKE_CUDA20_EXTENSION_COMPILE_OPTION "-std=c++20")
        list(APPEND CMAKE_CUDA_COMPILE_FEATURES cuda_std_20)
      endif()
      set(CMAKE_CUDA_STANDARD 20)
      set(CMAKE_CUDA_STANDARD_REQUIRED ON)
      find_package(CUDAToolkit)
      find_path(CUDNN_INCLUDE_DIR cudnn.h HINTS ${CUDAToolkit_INCLUDE_DIRS})
      find_library(CUDNN_LIBRARY cudnn HINTS ${CUDAToolkit_LIBRARY_DIR})
      if(NOT CUDAToolkit_FOUND OR NOT TARGET CUDA::cublas)
        _tessera_cuda_missing("the CUDA toolkit (cudart, cuBLAS) beside nvcc was not found")
      elseif(NOT CUDNN_INCLUDE_DIR OR NOT CUDNN_LIBRARY)
        _tessera_cuda_missing("cuDNN (cudnn.h, libcudnn) was not found beside the CUDA toolkit")
      else()
        set(TESSERA_CUDA_ENABLED ON)
        add_library(CUDNN::cudnn UNKNOWN IMPORTED)
        set_target_properties(CUDNN::cudnn PROPERTIES IMPORTED_LOCATION ${CUDNN_LIBRARY}
          INTERFACE_INCLUDE_DIRECTORIES ${CUDNN_INCLUDE_DIR})
        find_path(NCCL_INCLUDE_DIR nccl.h HINTS ${CUDAToolkit_INCLUDE_DIRS})
        find_library(NCCL_LIBRARY nccl HINTS ${CUDAToolkit_LIBRARY_DIR})
        if(NCCL_INCLUDE_DIR AND NCCL_LIBRARY)
          set(TESSERA_NCCL_ENABLED ON)
          add_library(NCCL::nccl UNKNOWN IMPORTED)
          set_target_properties(NCCL::nccl PROPERTIES IMPORTED_LOCATION ${NCCL_LIBRARY}
            INTERFACE_INCLUDE_DIRECTORIES ${NCCL_INCLUDE_DIR})
        endif()
        message(STATUS "CUDA backend: built with nvcc ${CMAKE_CUDA_COMPILER_VERSION} for "
                       "architectures ${CMAKE_CUDA_ARCHITECTURES}, cuDNN ${CUDNN_LIBRARY}, NCCL ${TESSERA_NCCL_ENABLED}")
      endif()
    endif()
  endif()
endif()
