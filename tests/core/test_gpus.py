"""Canonical GPU names: every vendor spelling maps onto one model; unknown names never raise."""

from __future__ import annotations

import pytest

from gpusupply.core.gpus import (
    canonical_model,
    families,
    normalize_gpu,
    resolve_gpu_query,
    suggest_gpu_names,
    unknown_gpu_message,
)


@pytest.mark.parametrize(
    ("name", "memory_gb", "canonical", "family"),
    [
        ("H100 SXM", None, "nvidia-h100-sxm5-80gb", "H100"),
        ("H100-80G-SXM", None, "nvidia-h100-sxm5-80gb", "H100"),
        ("h100_sxm5", None, "nvidia-h100-sxm5-80gb", "H100"),
        ("NVIDIA H100 PCIe", None, "nvidia-h100-pcie-80gb", "H100"),
        ("H100-80G-PCIe", None, "nvidia-h100-pcie-80gb", "H100"),
        ("H100 NVL", None, "nvidia-h100-nvl-94gb", "H100"),
        ("A100 PCIE", 40.0, "nvidia-a100-pcie-40gb", "A100"),
        ("A100 PCIE", 80.0, "nvidia-a100-pcie-80gb", "A100"),
        ("A100-40G-PCIe", None, "nvidia-a100-pcie-40gb", "A100"),
        ("A100 SXM4", None, "nvidia-a100-sxm4-80gb", "A100"),
        ("A100 SXM4", 40.0, "nvidia-a100-sxm4-40gb", "A100"),
        ("RTX 4090", None, "nvidia-rtx-4090-24gb", "RTX4090"),
        ("GeForce RTX 4090", None, "nvidia-rtx-4090-24gb", "RTX4090"),
        ("RTX-4090-24G", None, "nvidia-rtx-4090-24gb", "RTX4090"),
        ("RTX-A6000", None, "nvidia-rtx-a6000-48gb", "A6000"),
        ("L40S-48G", None, "nvidia-l40s-pcie-48gb", "L40S"),
        ("L4-24G", None, "nvidia-l4-pcie-24gb", "L4"),
        ("H200-141G-SXM", None, "nvidia-h200-sxm5-141gb", "H200"),
        ("B200-180G", None, "nvidia-b200-sxm6-180gb", "B200"),
        ("Tesla T4", None, "nvidia-t4-pcie-16gb", "T4"),
        ("nvidia-h100-sxm5-80gb", None, "nvidia-h100-sxm5-80gb", "H100"),
    ],
)
def test_known_spellings(name: str, memory_gb: float | None, canonical: str, family: str) -> None:
    model = normalize_gpu(name, memory_gb)
    assert (model.canonical, model.family, model.known) == (canonical, family, True)


@pytest.mark.parametrize(
    ("name", "canonical", "family"),
    [
        ("Imaginary RTX 9999", "unknown-imaginary-rtx-9999", "IMAGINARYRTX9999"),
        ("", "unknown-unnamed", "UNKNOWN"),
        ("???", "unknown-unnamed", "UNKNOWN"),
        ("MI300X", "unknown-mi300x", "MI300X"),
    ],
)
def test_unknown_names_are_kept(name: str, canonical: str, family: str) -> None:
    model = normalize_gpu(name, 192.0)
    assert (model.canonical, model.family, model.known) == (canonical, family, False)


def test_families_list_every_canonical_once() -> None:
    table = families()
    names = [c for canonicals in table.values() for c in canonicals]
    assert len(names) == len(set(names))
    assert table["H100"] == ["nvidia-h100-sxm5-80gb", "nvidia-h100-pcie-80gb", "nvidia-h100-nvl-94gb"]
    for family, canonicals in table.items():
        for canonical in canonicals:
            model = canonical_model(canonical)
            assert model is not None and model.family == family
    # A copy: callers cannot change the table.
    table["H100"].append("x")
    assert "x" not in families()["H100"]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("H100", ("H100", None)),
        ("h100", ("H100", None)),
        (" rtx4090 ", ("RTX4090", None)),
        ("nvidia-h100-sxm5-80gb", (None, "nvidia-h100-sxm5-80gb")),
        ("NVIDIA-H100-SXM5-80GB", (None, "nvidia-h100-sxm5-80gb")),
        ("H100 SXM", (None, "nvidia-h100-sxm5-80gb")),  # a model's spelling names that model
        ("h100-pcie", (None, "nvidia-h100-pcie-80gb")),
        ("RTX 4090", ("RTX4090", None)),
        ("rtx-4090", ("RTX4090", None)),
        ("RTX_4090", ("RTX4090", None)),
        ("GeForce RTX 4090", ("RTX4090", None)),
        ("4090", ("RTX4090", None)),  # a bare number names the one family that carries it
        ("6000", (None, None)),  # A6000 and RTX6000ADA: ambiguous
        ("rtx 6000 ada", ("RTX6000ADA", None)),
        ("l40s", ("L40S", None)),
        ("B300", (None, None)),
        ("RTX 4O90", (None, None)),
        ("", (None, None)),
        ("  ", (None, None)),
    ],
)
def test_resolve_gpu_query(query: str, expected: tuple[str | None, str | None]) -> None:
    assert resolve_gpu_query(query) == expected


@pytest.mark.parametrize(
    ("query", "first"),
    [("RTX 4O90", "RTX4090"), ("H1000", "H100"), ("6000", "A6000"), ("nvidia-h100-sxm-80gb", "nvidia-h100-sxm5-80gb")],
)
def test_suggestions_name_the_nearest_known_names(query: str, first: str) -> None:
    assert suggest_gpu_names(query)[0] == first
    assert len(suggest_gpu_names(query)) <= 3


def test_unknown_message_keeps_its_form_and_adds_the_suggestion() -> None:
    assert suggest_gpu_names("Z80") == [] and suggest_gpu_names("") == []
    plain = unknown_gpu_message("Z80")
    assert plain.startswith("unknown gpu_type 'Z80'; known families: A10, A100,") and "did you mean" not in plain
    near = unknown_gpu_message("RTX 4O90")
    assert near.startswith("unknown gpu_type 'RTX 4O90'; known families:")
    assert near.endswith("did you mean RTX4090, RTX5090 or RTX3090?")
    assert unknown_gpu_message("6000").endswith("did you mean A6000 or RTX6000ADA?")
