#!/usr/bin/env bash
# Sets the project up in .venv: system packages, torch (the CUDA build that fits
# this driver and card, checked on the GPU, else the CPU build), the songwriter
# runtime, every Python requirement, a .env, and optionally the model weights.
# Running it again only fills in what is missing, and replaces a torch that does
# not run on this GPU.
#
#   ./setup.sh             everything but the model weights
#   ./setup.sh --models    also download ACE-Step 1.5 into CHECKPOINT_DIR
#   ./setup.sh --cpu       install the CPU build of torch even if a GPU is present
#   ./setup.sh --no-system do not try to install ffmpeg/libopus with apt
#   ./setup.sh --dry-run   print every command it would run, torch's included; change nothing
#
# Environment: PYTHON (interpreter for the venv, default python3; 3.11 or newer),
# TORCH_CUDA (torch builds to try in order, e.g. "cu128 cu126", or "cpu"; by
# default chosen from the driver and card, see docs/setup.md),
# LLAMA_CUDA (1: build llama-cpp-python with CUDA even without a GPU; 0: never),
# FLASH_ATTN (0: never install flash-attn).
#
# The choices (torch build, llama.cpp with CUDA, flash-attn, version pins) are
# made by engine/setup/helper.py, which setup.bat runs too.
set -euo pipefail
cd "$(dirname "$0")"

MODELS=0
FORCE_CPU=0
SYSTEM=1
DRY_RUN=0
for arg in "$@"; do
  case "$arg" in
    --models) MODELS=1 ;;
    --cpu) FORCE_CPU=1 ;;
    --no-system) SYSTEM=0 ;;
    --dry-run) DRY_RUN=1 ;;
    -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
    *) echo "setup.sh: unknown option '$arg' (allowed: --models, --cpu, --no-system, --dry-run, --help)" >&2; exit 2 ;;
  esac
done

say() { printf '[setup] %s\n' "$*"; }
warn() { printf '[setup] WARNING: %s\n' "$*" >&2; }
# Print a command, then run it (only print it with --dry-run).
run() { say "\$ $*"; ((DRY_RUN)) || "$@"; }
((DRY_RUN)) && say "dry run: these are the commands a run would use; nothing is installed or changed"

# --- 1. System packages: ffmpeg (audio encoding, voice playback) and libopus (voice).
missing=()
command -v ffmpeg >/dev/null 2>&1 || missing+=(ffmpeg)
command -v ffprobe >/dev/null 2>&1 || missing+=(ffmpeg)
if ! { ldconfig -p 2>/dev/null | grep -q 'libopus\.so\.0'; }; then missing+=(libopus0); fi
if ((${#missing[@]})); then
  mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
  if ((SYSTEM)) && command -v apt-get >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then SUDO=(); elif sudo -n true 2>/dev/null; then SUDO=(sudo); else SUDO=(none); fi
    if [ "${SUDO[*]}" != none ]; then
      say "installing ${missing[*]} with apt-get"
      if ! { run "${SUDO[@]}" apt-get update -qq && run "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"; }; then
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
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "setup.sh: $PYTHON is missing or older than Python 3.11 (diffusers and transformers need 3.11); set PYTHON=/path/to/python3.11+" >&2
  exit 1
fi
if [ ! -x .venv/bin/python ]; then
  say "creating .venv with $("$PYTHON" --version)"
  run "$PYTHON" -m venv .venv
fi

# --- 3. torch for this driver and card (checked on the GPU), then llama-cpp-python,
# the requirements constrained to that torch, and flash-attn where it fits.
helper_args=(--python .venv/bin/python)
((FORCE_CPU)) && helper_args+=(--cpu)
((DRY_RUN)) && helper_args+=(--dry-run)
"$PYTHON" -m engine.setup.helper install "${helper_args[@]}"

# --- 4. Configuration.
if [ ! -f .env ]; then
  run install -m 600 .env.example .env  # it will hold the token: readable by its owner only
  ((DRY_RUN)) || say "wrote .env from .env.example (put your DISCORD_TOKEN there)"
fi

# --- 5. Model weights (optional).
if ((MODELS)); then
  run .venv/bin/python -m engine download || warn "model download did not finish; everything else is set up"
fi

((DRY_RUN)) && exit 0
say "done. Device and tier ('.venv/bin/python -m engine doctor' checks the whole machine):"
.venv/bin/python -m engine tiers | sed 's/^/    /'
