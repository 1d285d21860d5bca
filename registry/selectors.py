"""Replica labels and the ``key=value`` selectors that pick replicas out of a fleet. Pure: the registry
(rollout status, auto-promotion) and the agent (which generation to serve) apply the same rule."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from registry.errors import InvalidInput

LABEL_KEY = re.compile(r"[a-z0-9][a-z0-9._/-]{0,62}")
MAX_LABEL_VALUE = 256


def parse_label(text: str) -> tuple[str, str]:
    """``key=value`` as a pair; InvalidInput when the key or value is malformed."""
    key, sep, value = text.partition("=")
    return check_label(key, value) if sep else _malformed(text)


def check_label(key: str, value: str) -> tuple[str, str]:
    """The pair, if ``key`` matches ``[a-z0-9][a-z0-9._/-]*`` (≤ 63) and ``value`` is ≤ 256 printable
    characters without spaces; InvalidInput otherwise."""
    if not LABEL_KEY.fullmatch(key):
        raise InvalidInput(
            f"invalid replica label key {key!r}: 1 to 63 of [a-z0-9._/-], starting with a letter or digit"
        )
    if len(value) > MAX_LABEL_VALUE or not value.isprintable() or any(c.isspace() for c in value):
        raise InvalidInput(
            f"invalid value for replica label {key!r}: at most {MAX_LABEL_VALUE} printable characters, "
            "no spaces"
        )
    return key, value


def parse_labels(texts: Iterable[str]) -> dict[str, str]:
    """``key=value`` texts as a dict; a key given twice is refused."""
    labels: dict[str, str] = {}
    for text in texts:
        key, value = parse_label(text)
        if key in labels:
            raise InvalidInput(f"replica label {key!r} is given twice")
        labels[key] = value
    return labels


def matches(selector: str, labels: Mapping[str, str]) -> bool:
    """Whether a replica with ``labels`` is picked by ``selector`` (``key=value``)."""
    key, value = parse_label(selector)
    return labels.get(key) == value


def _malformed(text: str) -> tuple[str, str]:
    raise InvalidInput(f"invalid replica label {text!r}: expected key=value")
