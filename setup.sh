#!/usr/bin/env bash
# Sets the project up in .venv: system packages, torch (CUDA or CPU), the
# songwriter runtime, every Python requirement, a .env, and optionally the
# model weights. Running it again only fills in what is missing.
#
#   ./setup.sh             everything but the model weights
#   ./setup.sh --models    also download ACE-Step 1.5 into CHECKPOINT_DIR
#   ./setup.sh --cpu       install the CPU build of torch even if a GPU is present
#   ./setup.sh --no-system do not try to install ffmpeg/libopus with apt
#
# Environment: PYTHON (interpreter for the venv, default python3),
# TORCH_CUDA (CUDA builds to try in order, default "cu124 cu121 cu118"),
# LLAMA_CUDA (1: build llama-cpp-python with CUDA even without a GPU; 0: never).
set -euo pipefail
cd "$(dirname "$0")"

MODELS=0
FORCE_CPU=0
SYSTEM=1
for arg in "$@"; do
  case "$arg" in
    --models) MODELS=1 ;;
    --cpu) FORCE_CPU=1 ;;
    --no-system) SYSTEM=0 ;;
    -h|--help) sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "setup.sh: unknown option '$arg' (allowed: --models, --cpu, --no-system, --help)" >&2; exit 2 ;;
  esac
done

say() { printf '[setup] %s\n' "$*"; }
warn() { printf '[setup] WARNING: %s\n' "$*" >&2; }

TORCH_CPU_SPEC="torch==2.13.0"
LLAMA_SPEC="$(grep -E '^llama-cpp-python==' requirements.txt)"

# --- 1. System packages: ffmpeg (audio encoding, voice playback) and libopus (voice).
missing=()
command -v ffmpeg >/dev/null 2>&1 || missing+=(ffmpeg)
command -v ffprobe >/dev/null 2>&1 || missing+=(ffmpeg)
if ! { ldconfig -p 2>/dev/null | grep -q 'libopus\.so\.0'; }; then missing+=(libopus0); fi
if ((${#missing[@]})); then
  mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
  if ((SYSTEM)) && command -v apt-get >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then SUDO=""; elif sudo -n true 2>/dev/null; then SUDO="sudo"; else SUDO="none"; fi
    if [ "$SUDO" != none ]; then
      say "installing ${missing[*]} with apt-get"
      if ! { $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null; }; then
        warn "apt-get could not install ${missing[*]}; install them yourself (sudo apt-get install ${missing[*]})"
      fi
    else
      warn "missing ${missing[*]}: run 'sudo apt-get install ${missing[*]}' (setup.sh is not root and sudo needs a password)"
    fi
  else
    warn "missing ${missing[*]}: install them with your package manager (audio encoding and voice need them)"
  fi
fi

# --- 2. Virtual environment.
PYTHON="${PYTHON:-python3}"
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null; then
  echo "setup.sh: $PYTHON is missing or older than Python 3.10; set PYTHON=/path/to/python3.10+" >&2
  exit 1
fi
if [ ! -x .venv/bin/python ]; then
  say "creating .venv with $("$PYTHON" --version)"
  "$PYTHON" -m venv .venv
fi
PY=.venv/bin/python
PIP=(.venv/bin/python -m pip --disable-pip-version-check)

# --- 3. torch first, so that no later package pulls a different build in.
has_nvidia_gpu() { command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; }
if ! "$PY" -c 'import torch' >/dev/null 2>&1; then
  installed=0
  if ((!FORCE_CPU)) && has_nvidia_gpu; then
    for cuda in ${TORCH_CUDA:-cu124 cu121 cu118}; do
      say "installing torch built for CUDA ${cuda#cu}"
      if "${PIP[@]}" install -q torch --index-url "https://download.pytorch.org/whl/$cuda"; then
        installed=1; break
      fi
      warn "no torch build for $cuda could be installed; trying the next one"
    done
    ((installed)) || warn "no CUDA build of torch could be installed; falling back to the CPU build"
  fi
  if ((!installed)); then
    say "installing $TORCH_CPU_SPEC"
    "${PIP[@]}" install -q "$TORCH_CPU_SPEC"
  fi
fi
TORCH_VERSION="$("$PY" -c 'import torch; print(torch.__version__)' 2>/dev/null)"
CONSTRAINTS="$(mktemp)"
trap 'rm -f "$CONSTRAINTS"' EXIT
echo "torch==$TORCH_VERSION" >"$CONSTRAINTS"

# --- 4. llama-cpp-python (compiles from source: about 7 minutes the first time, cached after).
# The CUDA build needs the toolkit (nvcc) and is only worth it with a GPU to run on;
# LLAMA_CUDA=1 forces it (e.g. building on a GPU-less machine for later), LLAMA_CUDA=0 skips it.
want_cuda_llama=0
if command -v nvcc >/dev/null 2>&1 && { has_nvidia_gpu || [ "${LLAMA_CUDA:-}" = 1 ]; }; then want_cuda_llama=1; fi
[ "${LLAMA_CUDA:-}" = 0 ] && want_cuda_llama=0
if ((want_cuda_llama)); then
  if ! "$PY" -c 'import llama_cpp, sys; sys.exit(not llama_cpp.llama_supports_gpu_offload())' >/dev/null 2>&1; then
    say "building $LLAMA_SPEC with CUDA (nvcc found); this takes several minutes"
    CMAKE_ARGS="-DGGML_CUDA=on" FORCE_CMAKE=1 "${PIP[@]}" install -q --no-cache-dir --force-reinstall --no-deps "$LLAMA_SPEC" \
      || warn "the CUDA build of llama-cpp-python failed; the songwriter will run on the CPU"
  fi
fi
if ! "$PY" -c 'import llama_cpp' >/dev/null 2>&1; then
  say "building $LLAMA_SPEC for the CPU (several minutes the first time)"
  "${PIP[@]}" install -q -c "$CONSTRAINTS" "$LLAMA_SPEC"
fi

# --- 5. Everything else.
say "installing requirements (torch stays at $TORCH_VERSION)"
"${PIP[@]}" install -q -c "$CONSTRAINTS" -r requirements.txt -r requirements-dev.txt

if has_nvidia_gpu && command -v nvcc >/dev/null 2>&1 && "$PY" -c 'import torch, sys; sys.exit(not torch.cuda.is_available())' 2>/dev/null; then
  if ! "$PY" -c 'import flash_attn' >/dev/null 2>&1; then
    say "installing optional GPU extras (flash-attn)"
    "${PIP[@]}" install -q -c "$CONSTRAINTS" --no-build-isolation -r requirements-gpu.txt \
      || warn "flash-attn did not install; attention falls back to SDPA"
  fi
fi

# --- 6. Configuration.
if [ ! -f .env ]; then
  install -m 600 .env.example .env  # it will hold the token: readable by its owner only
  say "wrote .env from .env.example (put your DISCORD_TOKEN there)"
fi

# --- 7. Model weights (optional).
if ((MODELS)); then
  "$PY" -m engine download || warn "model download did not finish; everything else is set up"
fi

say "done. Device and tier:"
"$PY" -m engine tiers | sed 's/^/    /'
