"""Canonical GPU names and families.

Every vendor spells GPUs its own way ("H100 SXM", "H100-80G-SXM", "gpu_1x_h100_sxm5").
`normalize_gpu` maps any spelling onto one canonical model (`nvidia-h100-sxm5-80gb`) and its
family (`H100`). Unknown names are kept, flagged `known=False`, and never raise.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from functools import lru_cache


@dataclass(frozen=True, slots=True)
class GpuModel:
    canonical: str  # nvidia-h100-sxm5-80gb
    family: str  # H100
    memory_gb: int
    known: bool = True


# One row per canonical model: (canonical, family, memory GB, aliases). Aliases are matched after
# `_alias_key` folds case, separators and vendor prefixes, so "H100 SXM", "h100_sxm5" and
# "H100-80G-SXM" all meet the same key.
_MODELS: tuple[tuple[str, str, int, tuple[str, ...]], ...] = (
    ("nvidia-b200-sxm6-180gb", "B200", 180, ("b200", "b200 sxm", "b200-180g")),
    ("nvidia-h200-sxm5-141gb", "H200", 141, ("h200", "h200 sxm", "h200-141g-sxm", "h200 sxm5")),
    ("nvidia-gh200-96gb", "GH200", 96, ("gh200", "gh200 96gb")),
    ("nvidia-h200-nvl-141gb", "H200", 141, ("h200 nvl", "h200-141g-nvl")),
    ("nvidia-h100-sxm5-80gb", "H100", 80, ("h100 sxm", "h100 sxm5", "h100-80g-sxm", "h100 sxm5 80gb", "h100")),
    ("nvidia-h100-pcie-80gb", "H100", 80, ("h100 pcie", "h100-80g-pcie", "h100 pcie 80gb")),
    ("nvidia-h100-nvl-94gb", "H100", 94, ("h100 nvl", "h100-94g-nvl")),
    ("nvidia-a100-sxm4-80gb", "A100", 80, ("a100 sxm4", "a100 sxm4 80gb", "a100-80g-sxm", "a100 sxm", "a100 sxm 80gb")),
    ("nvidia-a100-sxm4-40gb", "A100", 40, ("a100 sxm4 40gb", "a100-40g-sxm")),
    ("nvidia-a100-pcie-80gb", "A100", 80, ("a100 pcie", "a100-80g-pcie", "a100 pcie 80gb", "a100x", "a100 80gb")),
    ("nvidia-a100-pcie-40gb", "A100", 40, ("a100 pcie 40gb", "a100-40g-pcie", "a100 40gb")),
    ("nvidia-l40s-pcie-48gb", "L40S", 48, ("l40s", "l40s-48g", "l40s pcie")),
    ("nvidia-l40-pcie-48gb", "L40", 48, ("l40", "l40-48g")),
    ("nvidia-l4-pcie-24gb", "L4", 24, ("l4", "l4-24g")),
    ("nvidia-a10-pcie-24gb", "A10", 24, ("a10", "a10-24g")),
    ("nvidia-a40-pcie-48gb", "A40", 48, ("a40", "a40-48g")),
    ("nvidia-rtx-a6000-48gb", "A6000", 48, ("rtx a6000", "rtx-a6000", "a6000")),
    ("nvidia-rtx-6000ada-48gb", "RTX6000ADA", 48, ("rtx 6000ada", "rtx 6000 ada", "rtx-6000-ada")),
    ("nvidia-rtx-5090-32gb", "RTX5090", 32, ("rtx 5090", "rtx-5090", "geforce rtx 5090")),
    ("nvidia-rtx-4090-24gb", "RTX4090", 24, ("rtx 4090", "rtx-4090", "geforce rtx 4090")),
    ("nvidia-rtx-3090-24gb", "RTX3090", 24, ("rtx 3090", "rtx-3090", "geforce rtx 3090")),
    ("nvidia-v100-sxm2-32gb", "V100", 32, ("v100", "tesla v100", "v100-32g")),
    ("nvidia-v100-sxm2-16gb", "V100", 16, ("v100 16gb", "v100-16g")),
    ("nvidia-t4-pcie-16gb", "T4", 16, ("t4", "tesla t4")),
)

_VENDOR_PREFIXES = ("nvidia ", "geforce ", "tesla ")
_MEMORY_TOKEN = re.compile(r"(\d+)gb?")


def _alias_key(name: str) -> str:
    key = re.sub(r"[\s_\-]+", " ", name.strip().lower())
    for prefix in _VENDOR_PREFIXES:
        if key.startswith(prefix) and key != prefix.strip():
            key = key[len(prefix) :]
    return key.strip()


_BY_ALIAS: dict[str, GpuModel] = {}
_BY_CANONICAL: dict[str, GpuModel] = {}
_FAMILIES: dict[str, list[str]] = {}
for _canonical, _family, _mem, _aliases in _MODELS:
    _model = GpuModel(_canonical, _family, _mem)
    _BY_CANONICAL[_canonical] = _model
    _FAMILIES.setdefault(_family, []).append(_canonical)
    for _alias in (*_aliases, _canonical):
        _BY_ALIAS.setdefault(_alias_key(_alias), _model)


def _unknown(name: str, memory_gb: float | None) -> GpuModel:
    slug = re.sub(r"[^a-z0-9]+", "-", name.strip().lower()).strip("-") or "unnamed"
    family = re.sub(r"[^A-Z0-9]+", "", name.upper()) or "UNKNOWN"
    return GpuModel(f"unknown-{slug}", family, int(round(memory_gb or 0)), known=False)


@lru_cache(maxsize=4096)
def normalize_gpu(name: str, memory_gb: float | None = None) -> GpuModel:
    """Map a vendor's GPU name onto a canonical model.

    `memory_gb` settles names that several sizes share ("A100 PCIE" with 40 or 80 GB).
    """
    key = _alias_key(name)
    model = _BY_ALIAS.get(key)
    if model is None:
        # "RTX-4090-24G", "H100 80GB SXM": drop the memory token, and let it settle the size.
        tokens = key.split()
        sizes = [t for t in tokens if _MEMORY_TOKEN.fullmatch(t)]
        model = _BY_ALIAS.get(" ".join(t for t in tokens if t not in sizes))
        if model is None:
            return _unknown(name, memory_gb)
        if sizes and not memory_gb:
            size = _MEMORY_TOKEN.fullmatch(sizes[0])
            assert size is not None  # sizes holds only tokens that match
            memory_gb = float(size.group(1))
    if memory_gb and abs(model.memory_gb - memory_gb) > 8:
        # Same model name, other memory size: pick the sibling in the family that fits.
        for canonical in _FAMILIES[model.family]:
            sibling = _BY_CANONICAL[canonical]
            if abs(sibling.memory_gb - memory_gb) <= 8 and _same_form_factor(sibling, model):
                return sibling
    return model


def _same_form_factor(a: GpuModel, b: GpuModel) -> bool:
    return a.canonical.rsplit("-", 1)[0].split("-")[2:] == b.canonical.rsplit("-", 1)[0].split("-")[2:]


def families() -> dict[str, list[str]]:
    """Family -> canonical names, as `GET /available_gpus` answers."""
    return {family: list(names) for family, names in _FAMILIES.items()}


def _folded(name: str) -> str:
    """A user's spelling without case, separators or vendor prefix: `RTX 4090`, `rtx-4090`,
    `RTX_4090` and `GeForce RTX 4090` all fold to `rtx4090`."""
    return _alias_key(name).replace(" ", "")


_FAMILY_BY_FOLD: dict[str, str] = {_folded(family): family for family in _FAMILIES}
# Canonical names and the aliases that name one model, folded (a family's fold wins over an alias).
_CANONICAL_BY_FOLD: dict[str, str] = {}
for _canonical, _family, _mem, _aliases in _MODELS:
    for _alias in (_canonical, *_aliases):
        _CANONICAL_BY_FOLD.setdefault(_folded(_alias), _canonical)
# "4090" alone: the families whose only number it is.
_FAMILIES_BY_NUMBER: dict[str, list[str]] = {}
for _family in _FAMILIES:
    _FAMILIES_BY_NUMBER.setdefault("".join(re.findall(r"\d+", _family)), []).append(_family)


def resolve_gpu_query(gpu_type: str) -> tuple[str | None, str | None]:
    """Read a user's `gpu_type`: a family ("H100") or a model ("nvidia-h100-sxm5-80gb", "H100 SXM").

    Returns (family, canonical); exactly one is set, or both are None when the name is unknown.
    Case, spaces, hyphens, underscores and an NVIDIA/GeForce/Tesla prefix do not matter
    (`RTX 4090`, `rtx-4090`, `RTX_4090`); a bare number names the one family that carries it
    (`4090`). A family wins over a model alias (`H100` is the family, not the SXM5 model).
    """
    text = gpu_type.strip()
    if not text:
        return None, None
    if text in _BY_CANONICAL:
        return None, text
    key = _folded(text)
    if key in _FAMILY_BY_FOLD:
        return _FAMILY_BY_FOLD[key], None
    if key in _CANONICAL_BY_FOLD:
        return None, _CANONICAL_BY_FOLD[key]
    if key.isdigit() and len(_FAMILIES_BY_NUMBER.get(key, ())) == 1:
        return _FAMILIES_BY_NUMBER[key][0], None
    return None, None


def suggest_gpu_names(gpu_type: str, limit: int = 3) -> list[str]:
    """The known names nearest an unknown spelling (families first), for a did-you-mean."""
    key = _folded(gpu_type)
    if not key:
        return []
    shown = {fold: family for fold, family in _FAMILY_BY_FOLD.items()}
    for canonical in _BY_CANONICAL:
        shown.setdefault(_folded(canonical), canonical)
    near = difflib.get_close_matches(key, list(shown), n=limit, cutoff=0.6)
    if key.isdigit():  # "6000": every family with that number
        near = [_folded(f) for f in _FAMILIES_BY_NUMBER.get(key, [])] + near
    names = list(dict.fromkeys(shown[fold] for fold in near))
    return names[:limit]


def unknown_gpu_message(gpu_type: str) -> str:
    """The 422 text for a name `resolve_gpu_query` does not know (with the nearest names)."""
    known = ", ".join(sorted(_FAMILIES))
    message = f"unknown gpu_type {gpu_type!r}; known families: {known} (or a canonical name from GET /available_gpus)"
    near = suggest_gpu_names(gpu_type)
    if not near:
        return message
    choices = near[0] if len(near) == 1 else f"{', '.join(near[:-1])} or {near[-1]}"
    return f"{message}; did you mean {choices}?"


def canonical_model(canonical: str) -> GpuModel | None:
    return _BY_CANONICAL.get(canonical)
