#!/usr/bin/env bash
# Installs every dependency from Debian 12's packages, then configures and
# builds tessera in ./build. Run as root (or with sudo) on a fresh machine:
#   tools/bootstrap.sh            # install + build, and tessera into /usr/local/bin
#   TESSERA_SKIP_APT=1 tools/bootstrap.sh   # build (and install) only
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(
  build-essential cmake ninja-build pkg-config
  libdnnl-dev                              # oneDNN 2.x: CPU convolution, pooling, matmul
  openmpi-bin libopenmpi-dev               # Open MPI
  libhdf5-dev                              # weights and checkpoints
  libopenimageio-dev openimageio-tools     # images
  libprotobuf-dev protobuf-compiler        # .caffemodel import
  libzip-dev                               # .pth (zip) import
  zlib1g-dev                               # checkpoints' CRC-32
  libssl-dev                               # SHA-256 (OpenSSL libcrypto)
  nlohmann-json3-dev libtomlplusplus-dev libcli11-dev libspdlog-dev libfmt-dev
  libgtest-dev libbenchmark-dev
  python3-matplotlib                       # tools/scaling-study's plots
)
# A one-node Slurm for tests/slurm (see slurm/ for the job scripts). Without
# recommends: the daemons and clients only, no mail or database servers.
# Trap: Open MPI's libpmix2 depends on libmunge2; never purge libmunge2.
slurm_packages=(slurmctld slurmd slurm-client munge)

if [[ -z "${TESSERA_SKIP_APT:-}" ]]; then
  sudo=""
  [[ $(id -u) -ne 0 ]] && sudo="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq "${packages[@]}"
  $sudo apt-get install -y -qq --no-install-recommends "${slurm_packages[@]}"
fi

jobs=$(nproc)
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release
cmake --build build -j "$jobs"

# `tessera` on PATH (the Slurm scripts and the README's later commands run
# it by name): /usr/local/bin, or TESSERA_PREFIX/bin; TESSERA_SKIP_INSTALL=1
# leaves it in build/src/cli only.
if [[ -z "${TESSERA_SKIP_INSTALL:-}" ]]; then
  prefix=${TESSERA_PREFIX:-/usr/local}
  if [[ -w $prefix || -w $(dirname "$prefix") ]]; then
    cmake --install build --prefix "$prefix"
  else
    sudo cmake --install build --prefix "$prefix"
  fi
fi
