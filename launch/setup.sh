#!/usr/bin/env bash
# Installs every Debian package the project needs. Idempotent: packages already present are
# skipped, and apt-get update runs at most once. Works as root or through sudo.
#   launch/setup.sh            build, test and demo dependencies
set -euo pipefail

packages=(
  g++ cmake make pkg-config git
  libopenmpi-dev openmpi-bin
  libopenblas-dev
  libprotobuf-dev protobuf-compiler
  libspdlog-dev libfmt-dev
  libgtest-dev
  # tests/fuzz/run_fuzzers.sh: clang with libFuzzer and the sanitizers' runtimes.
  clang libclang-rt-14-dev
  libsentencepiece-dev sentencepiece
  # Compressed corpora (.gz, .zst); the command-line tools make the test data.
  zlib1g-dev libzstd-dev gzip zstd
  # Vectorised math (tanh, exp) for the CPU kernels; small-matrix kernels for expert blocks.
  libsleef-dev libxsmm-dev
  # The PyTorch baseline of the step benchmark and the reference implementation (tests/).
  python3-torch
  wordnet-base
  gnuplot-nox
  # Slurm for launch/slurm/ and its test, which runs its own daemons from a temporary directory.
  # Without /etc/slurm/slurm.conf the packages start no Slurm daemon; munge's starts munged where
  # systemd or sysvinit runs (not in a container), which the test does not use.
  slurm-wlm munge
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "[setup] all ${#packages[@]} packages are installed"
  exit 0
fi

if [ "$(id -u)" -eq 0 ]; then
  sudo=()
elif command -v sudo >/dev/null 2>&1; then
  sudo=(sudo)
else
  echo "[setup] error: need root or sudo to install: ${missing[*]}" >&2
  exit 1
fi

echo "[setup] installing: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
echo "[setup] done"
