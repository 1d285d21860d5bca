"""Reconciliation alone: which loads, reloads and unloads take an engine to the desired adapters."""

from __future__ import annotations

from pathlib import Path

from cli.agent.plan import Load, Unload, owned, owned_digest, plan

VERSIONS = Path("/cache/versions")
A, B, C = "a" * 64, "b" * 64, "c" * 64


def root(digest: str) -> str:
    return str(VERSIONS / digest)


def test_an_empty_engine_loads_everything() -> None:
    assert plan({"x": A, "y": B}, {}, VERSIONS).actions == [Load("x", A), Load("y", B)]


def test_a_converged_engine_needs_nothing() -> None:
    assert plan({"x": A}, {"x": root(A)}, VERSIONS) == plan({}, {}, VERSIONS)


def test_a_new_digest_is_swapped_in_place_or_unloaded_then_loaded() -> None:
    served = {"x": root(A)}
    assert plan({"x": B}, served, VERSIONS).actions == [Load("x", B, replace=True)]
    assert plan({"x": B}, served, VERSIONS, can_replace=False).actions == [Unload("x"), Load("x", B)]


def test_new_names_then_new_weights_then_unloads() -> None:
    served = {"old@aaaaaaaaaaaa": root(A), "x": root(A), "gone": root(C)}
    steps = plan({"x": B, "old@bbbbbbbbbbbb": B}, served, VERSIONS).actions
    assert steps == [
        Load("old@bbbbbbbbbbbb", B),
        Load("x", B, replace=True),
        Unload("old@aaaaaaaaaaaa"),
        Unload("gone"),
    ]


def test_foreign_adapters_are_left_alone_unless_the_agent_owns_the_engine() -> None:
    served = {"theirs": "/models/theirs", "x": "/models/x", "elsewhere": f"/other-cache/versions/{A}"}
    kept = plan({"x": A}, served, VERSIONS)
    assert kept.actions == [] and kept.conflicts == {"x": "/models/x"}
    taken = plan({"x": A}, served, VERSIONS, owned_only=False)
    assert taken.actions == [Load("x", A, replace=True), Unload("theirs"), Unload("elsewhere")]
    assert taken.conflicts == {}


def test_only_roots_under_the_versions_directory_are_owned() -> None:
    assert owned_digest(root(A), VERSIONS) == A
    assert owned_digest(f"{VERSIONS}/{A[:12]}", VERSIONS) is None
    assert owned_digest(f"{VERSIONS}/{A}/sub", VERSIONS) is None
    assert owned({"x": root(A), "y": "/elsewhere"}, VERSIONS) == {"x": A}
