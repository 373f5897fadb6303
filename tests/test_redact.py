"""Secret redaction: secret-named keys, known key shapes in text, attrs records, sandbox environments."""

from __future__ import annotations

import string
from collections import namedtuple

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from rlm_core.records import RunMetadata
from rlm_core.redact import REDACTED, contains_secret, is_secret_name, redact, redact_env, redact_text
from rlm_core.types import Message, StopReason, TokenUsage

ALNUM = string.ascii_letters + string.digits

EXAMPLES = {
    "openai": "sk-" + "aB3" * 16,
    "openai-project": "sk-proj-" + "Zq9_x-" * 8,
    "anthropic": "sk-ant-api03-" + "Kd8-" * 20,
    "aws": "AKIA" + "ABCDEFGH12345678",
    "aws-session": "ASIA" + "Z9Y8X7W6V5U4T3S2",
    "github": "ghp_" + "a1B2" * 9,
    "github-pat": "github_pat_" + "11AB_cd" * 8,
    "slack": "xoxb-1234567890-abcdefABCDEF",
    "google": "AIza" + "Sy-_9" * 7,
    "modal-id": "ak-" + "AbCd3" * 5,
    "modal-secret": "as-" + "9zYx" * 6,
}


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_each_key_shape_is_masked_in_text(name: str) -> None:
    secret = EXAMPLES[name]
    for text in (f"key is {secret} ok", f'{{"k": "{secret}"}}', f"KEY={secret}\n", secret):
        out = redact_text(text)
        assert secret not in out
        assert REDACTED in out
        assert contains_secret(text)


def test_bearer_header_keeps_the_scheme_and_drops_the_token() -> None:
    out = redact_text("Authorization: Bearer eyJhbGciOi.JIUzI1NiJ9-abc_def\nnext line")
    assert out == "Authorization: Bearer [REDACTED]\nnext line"
    assert "abc_def" not in redact_text("authorization: bearer abc_def_ghij")


def test_url_password_is_masked_but_user_and_host_stay() -> None:
    out = redact_text("connect to postgres://admin:hunter2secret@db.internal:5432/app now")
    assert out == "connect to postgres://admin:[REDACTED]@db.internal:5432/app now"


@pytest.mark.parametrize(
    "text",
    [
        "def task_list(): return [x for x in range(10)]",
        "the disk-encryption-configuration-settings flag",
        "ask-for-the-context-length-before-slicing",
        "Bearer of bad news",
        "see https://example.org/path?x=1",
        "AKIA is short",
        "sk-short",
    ],
)
def test_ordinary_text_is_left_alone(text: str) -> None:
    assert redact_text(text) == text
    assert not contains_secret(text)


@pytest.mark.parametrize(
    "name",
    [
        "api_key",
        "OPENAI_API_KEY",
        "apiKey",
        "X-Api-Key",
        "Authorization",
        "auth",
        "password",
        "db_passwd",
        "AWS_SESSION_TOKEN",
        "client_secret",
        "credentials",
        "authToken",
        "MODAL_TOKEN_ID",
        "secretkey",
    ],
)
def test_secret_names(name: str) -> None:
    assert is_secret_name(name)


@pytest.mark.parametrize("name", ["author", "model_name", "monkeypatch", "content", "PATH", "stop_reason"])
def test_ordinary_names(name: str) -> None:
    assert not is_secret_name(name)


def test_values_under_secret_keys_are_masked_but_counts_survive() -> None:
    value = {
        "api_key": "plain-looking-value",
        "max_tokens": 512,
        "input_tokens": 10,
        "max_root_tokens": 1_000_000,
        "use_auth": True,
        "token": None,
        "headers": {"Authorization": "whatever", "Accept": "application/json"},
        "credentials": {"user": "bob", "retries": 3},
        "tokens": ["t1", "t2"],
        "note": "key " + EXAMPLES["openai"],
    }
    out = redact(value)
    assert out == {
        "api_key": REDACTED,
        "max_tokens": 512,
        "input_tokens": 10,
        "max_root_tokens": 1_000_000,
        "use_auth": True,
        "token": None,
        "headers": {"Authorization": REDACTED, "Accept": "application/json"},
        "credentials": {"user": REDACTED, "retries": 3},
        "tokens": [REDACTED, REDACTED],
        "note": f"key {REDACTED}",
    }
    assert value["api_key"] == "plain-looking-value"  # the input is not modified


def test_containers_keep_their_types() -> None:
    Pair = namedtuple("Pair", "left right")
    secret = EXAMPLES["github"]
    out = redact(
        {"t": (secret, 1), "p": Pair(secret, "x"), "s": {secret}, "f": frozenset({2}), "e": StopReason.FINAL}
    )
    assert out["t"] == (REDACTED, 1)
    assert out["p"] == Pair(REDACTED, "x")
    assert isinstance(out["p"], Pair)
    assert out["s"] == {REDACTED}
    assert out["f"] == frozenset({2})
    assert out["e"] is StopReason.FINAL


def test_attrs_records_are_copied_with_secrets_masked() -> None:
    secret = EXAMPLES["anthropic"]
    message = Message("user", f"my key is {secret}")
    masked = redact(message)
    assert isinstance(masked, Message)
    assert masked.content == f"my key is {REDACTED}"
    assert message.content.endswith(secret)

    metadata = RunMetadata(
        "r1", "m", "openai", "local", 1.0, extra={"backend_kwargs": {"api_key": "x", "max_tokens": 5}}
    )
    out = redact(metadata)
    assert out.extra == {"backend_kwargs": {"api_key": REDACTED, "max_tokens": 5}}
    assert out.max_root_tokens == metadata.max_root_tokens

    usage = TokenUsage(3, 4)
    assert redact(usage) is usage  # nothing to change: no copy needed


def test_attrs_field_named_like_a_secret() -> None:
    @attrs.define
    class Settings:
        api_key: str
        max_tokens: int = 10
        _token: str = "t"

    out = redact(Settings("abc", 20, "zzz"))
    assert out == Settings(REDACTED, 20, REDACTED)


def test_large_string_with_one_key_at_the_end() -> None:
    secret = EXAMPLES["aws"]
    text = "lorem ipsum dolor sit amet, 12345 " * 150_000 + secret
    out = redact_text(text)
    assert out.endswith(REDACTED)
    assert len(out) == len(text) - len(secret) + len(REDACTED)


def test_redact_env_drops_secret_variables() -> None:
    env = {
        "PATH": "/usr/bin",
        "HOME": "/home/u",
        "OPENAI_API_KEY": "sk-x",
        "AWS_SECRET_ACCESS_KEY": "abc",
        "MODAL_TOKEN_SECRET": "as-x",
        "SOMETHING": "contains " + EXAMPLES["slack"],
        "LANG": "C.UTF-8",
    }
    assert redact_env(env) == {"PATH": "/usr/bin", "HOME": "/home/u", "LANG": "C.UTF-8"}


# -- properties ----------------------------------------------------------------------------------


def _body(alphabet: str, min_size: int, max_size: int = 48) -> st.SearchStrategy[str]:
    return st.text(alphabet=alphabet, min_size=min_size, max_size=max_size)


SECRETS = st.one_of(
    st.builds(
        lambda p, b: p + b, st.sampled_from(["sk-", "sk-proj-", "sk-ant-api03-"]), _body(ALNUM + "-_", 20)
    ),
    st.builds(
        lambda p, b: p + b,
        st.sampled_from(["AKIA", "ASIA"]),
        _body(string.ascii_uppercase + string.digits, 16, 16),
    ),
    st.builds(lambda p, b: p + b, st.sampled_from(["ghp_", "gho_", "ghs_"]), _body(ALNUM, 36, 36)),
    st.builds(lambda b: "github_pat_" + b, _body(ALNUM + "_", 22, 82)),
    st.builds(
        lambda p, b: p + b, st.sampled_from(["xoxb-", "xoxp-", "xoxa-", "xoxr-"]), _body(ALNUM + "-", 10)
    ),
    st.builds(lambda b: "AIza" + b, _body(ALNUM + "-_", 35, 35)),
    st.builds(lambda p, b: p + b, st.sampled_from(["ak-", "as-"]), _body(ALNUM, 22, 22)),
)

# Surrounding text without ASCII letters, digits, "-" or "_": it can never contain the secret
# itself, so "the secret is not in the output" means redaction removed it.
NOISE = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters=ALNUM + "-_"),
    max_size=60,
)
WORDS = st.lists(st.text(alphabet=string.ascii_lowercase, min_size=1, max_size=9), max_size=12)
SEPARATORS = st.sampled_from([" ", "\n", "\t", "=", ": ", '"', "'", "(", ", "])


@given(secret=SECRETS, before=NOISE, after=NOISE)
def test_property_secret_in_random_text_never_survives(secret: str, before: str, after: str) -> None:
    out = redact_text(before + secret + after)
    assert secret not in out
    assert redact({"text": before + secret + after})["text"] == out


@given(secret=SECRETS, before=WORDS, after=WORDS, sep=SEPARATORS)
def test_property_secret_among_words_never_survives(
    secret: str, before: list[str], after: list[str], sep: str
) -> None:
    text = " ".join(before) + sep + secret + sep + " ".join(after)
    out = redact_text(text)
    assert secret not in out
    assert out.startswith(" ".join(before))


@given(
    token=st.builds(
        lambda a, d, b: a + d + b,
        _body(ALNUM + "._~+/=-", 4, 30),
        st.sampled_from(string.digits),
        _body(ALNUM, 4, 30),
    ),
    before=WORDS,
    scheme=st.sampled_from(["Bearer", "bearer", "BEARER"]),
)
def test_property_bearer_token_never_survives(token: str, before: list[str], scheme: str) -> None:
    # Words are letters only; the token has a digit, so only the header itself can hold it.
    out = redact_text(" ".join(before) + f" Authorization: {scheme} {token}\n")
    assert token not in out


@given(
    count=st.integers(min_value=0, max_value=10**12),
    name=st.sampled_from(["max_tokens", "input_tokens", "max_root_tokens", "max_sub_tokens", "tokens"]),
    nested=st.booleans(),
)
def test_property_token_counts_survive(count: int, name: str, nested: bool) -> None:
    value = {"outer": {name: count}} if nested else {name: count}
    assert redact(value) == value
