"""What each platform kind means, in one table: how prompts name it, its sources' language, its
compiler and default command line, how many measured runs it needs by default, and which
variable selects its GPUs."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PlatformFacts:
    kind: str  # cuda | hip | cpu
    label: str  # how prompts name the programming model
    code_lang: str  # fence language of its sources in prompts
    compiler: str  # the compiler binary a study's default line calls
    default_compiler: str  # the command line used when a study names none
    default_repeat: int  # measured runs per candidate when [measure].repeat = 0
    visible_env: str  # variable that selects its GPUs ("" on the CPU)


# The paper used `nvcc -std=c++14 -Xcompiler -Wall -arch=sm_80 -O3` and
# `hipcc -std=c++14 -Wall -O3 --offload-arch=gfx908`. Repeats: GPU runs spread by a few percent;
# two on CPUs, where a second run already gives the noise estimate the stage-3 test needs.
PLATFORM_FACTS: dict[str, PlatformFacts] = {
    "cuda": PlatformFacts("cuda", "CUDA", "cuda", "nvcc", "nvcc -std=c++17 -O3 -Xcompiler -Wall -arch=native", 3,
                          "CUDA_VISIBLE_DEVICES"),
    "hip": PlatformFacts("hip", "HIP", "cpp", "hipcc", "hipcc -std=c++17 -Wall -O3 --offload-arch=gfx908", 3,
                         "ROCR_VISIBLE_DEVICES"),
    "cpu": PlatformFacts("cpu", "OpenMP C++", "cpp", "g++", "g++ -std=c++17 -O3 -Wall -fopenmp", 2, ""),
}
