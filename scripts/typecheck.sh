#!/usr/bin/env bash
# mypy cannot follow setuptools' package-dir mapping, so check the installed layout through a
# tree of symlinks: .typecheck/tunelab/{engine,store,tui,themes} -> the real folders, and
# .typecheck/tests -> tests (the tests import `tunelab.*` and `tests.*`, as pytest runs them).
# The cache lives outside the rebuilt tree, so a second run only re-checks what changed.
set -euo pipefail
cd "$(dirname "$0")/.."
rm -rf .typecheck && mkdir -p .typecheck/tunelab
for f in tunelab/*.py; do ln -s "../../$f" .typecheck/tunelab/; done
for d in engine store tui themes; do ln -s "../../$d" ".typecheck/tunelab/$d"; done
ln -s ../tests .typecheck/tests
cd .typecheck && ../.venv/bin/mypy -p tunelab -p tests --config-file ../pyproject.toml \
    --cache-dir ../.mypy_cache
