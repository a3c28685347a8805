# What an official CUDA LibTorch needs from the CUDA toolkit around find_package(Torch):
# vdm_cuda_before_torch() finds the toolkit and supplies the nvToolsExt target that LibTorch
# 2.5-2.7 may ask for; vdm_check_torch_cuda() refuses a toolkit of another major version.

# LibTorch 2.5-2.7's Caffe2 files look for the header-only NVTX 3 under their own source tree,
# which an installed LibTorch does not have, and then fall back to linking CUDA::nvToolsExt.
# CUDA >= 12.9 ships no nvToolsExt library, so FindCUDAToolkit defines no such target and
# configuring fails. NVTX 3 is what that library became: an interface target of that name that
# carries the nvtx3 headers (and LibTorch's switch to them) satisfies LibTorch.
macro(vdm_cuda_before_torch)
  if(NOT DEFINED CUDAToolkit_ROOT AND NOT DEFINED ENV{CUDAToolkit_ROOT} AND EXISTS /usr/local/cuda)
    set(CUDAToolkit_ROOT /usr/local/cuda)
  endif()
  find_package(CUDAToolkit QUIET)
  if(CUDAToolkit_FOUND AND NOT TARGET CUDA::nvToolsExt)
    find_path(VDM_NVTX3_INCLUDE_DIR nvtx3/nvToolsExt.h HINTS ${CUDAToolkit_INCLUDE_DIRS})
    if(VDM_NVTX3_INCLUDE_DIR)
      add_library(CUDA::nvToolsExt INTERFACE IMPORTED)
      target_include_directories(CUDA::nvToolsExt INTERFACE ${VDM_NVTX3_INCLUDE_DIR})
      target_compile_definitions(CUDA::nvToolsExt INTERFACE TORCH_CUDA_USE_NVTX3)
      message(STATUS "vdm: CUDA ${CUDAToolkit_VERSION} has no nvToolsExt library: CUDA::nvToolsExt "
                     "stands for the header-only NVTX 3 (${VDM_NVTX3_INCLUDE_DIR})")
    endif()
  endif()
endmacro()

# The CUDA version a LibTorch was built for: the official zip's build-version
# ("2.6.0+cu124") or the wheel's version.py (cuda = '13.0'). Empty when neither says.
function(vdm_torch_cuda_version prefix out)
  set(version "")
  if(EXISTS "${prefix}/build-version")
    file(READ "${prefix}/build-version" text)
    if(text MATCHES "\\+cu([0-9]+)([0-9])")
      set(version "${CMAKE_MATCH_1}.${CMAKE_MATCH_2}")
    endif()
  elseif(EXISTS "${prefix}/version.py")
    file(STRINGS "${prefix}/version.py" line REGEX "^cuda *[:=]")
    if(line MATCHES "['\"]([0-9]+\\.[0-9]+)")
      set(version "${CMAKE_MATCH_1}")
    endif()
  endif()
  set(${out} "${version}" PARENT_SCOPE)
endfunction()

# Two CUDA runtimes of different major versions in one process (LibTorch's and the toolkit's,
# which NCCL's communicator links) fail at run time in ways that name neither; refuse at
# configure time instead.
function(vdm_check_torch_cuda torch_has_cuda)
  if(NOT torch_has_cuda OR NOT CUDAToolkit_FOUND)
    return()
  endif()
  get_filename_component(prefix "${TORCH_INSTALL_PREFIX}" ABSOLUTE)
  vdm_torch_cuda_version("${prefix}" torch_cuda)
  if(torch_cuda STREQUAL "")
    message(STATUS "vdm: cannot tell which CUDA LibTorch (${prefix}) was built for; "
                   "make sure it is CUDA ${CUDAToolkit_VERSION_MAJOR}")
    return()
  endif()
  string(REGEX MATCH "^[0-9]+" torch_major "${torch_cuda}")
  if(NOT torch_major EQUAL CUDAToolkit_VERSION_MAJOR)
    message(FATAL_ERROR
      "LibTorch at ${prefix} was built for CUDA ${torch_cuda}, but the CUDA toolkit found is "
      "${CUDAToolkit_VERSION} (${CUDAToolkit_BIN_DIR}); linking both would load two CUDA runtimes. "
      "Point -DCUDAToolkit_ROOT at a CUDA ${torch_major}.x toolkit, or use a LibTorch built for "
      "CUDA ${CUDAToolkit_VERSION_MAJOR} (e.g. a torch wheel +cu${CUDAToolkit_VERSION_MAJOR}0).")
  endif()
  message(STATUS "vdm: LibTorch built for CUDA ${torch_cuda}; toolkit ${CUDAToolkit_VERSION}")
endfunction()
