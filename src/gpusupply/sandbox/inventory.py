"""Realistic GPU models and price ranges that the sandbox inventories draw from.

Prices are USD per GPU-hour, ranges seen on public marketplaces in 2025-2026; they only need to
be plausible and deterministic for a seed, not current.
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class SimGpu:
    vast_name: str  # how Vast spells it ("RTX 4090")
    nebula_name: str  # how Nebula spells it ("RTX-4090-24G")
    nebula_family: str  # Nebula's grouping key ("RTX", "H100")
    memory_mb: int
    price_low: float
    price_high: float
    weight: int  # how common it is on a marketplace


SIM_GPUS: tuple[SimGpu, ...] = (
    SimGpu("RTX 4090", "RTX-4090-24G", "RTX", 24564, 0.25, 0.75, 30),
    SimGpu("RTX 3090", "RTX-3090-24G", "RTX", 24576, 0.12, 0.35, 20),
    SimGpu("RTX 5090", "RTX-5090-32G", "RTX", 32607, 0.45, 1.10, 10),
    SimGpu("RTX A6000", "RTX-A6000", "RTX", 49140, 0.40, 0.90, 8),
    SimGpu("L40S", "L40S-48G", "L40S", 46068, 0.70, 1.40, 8),
    SimGpu("L4", "L4-24G", "L4", 23034, 0.25, 0.60, 4),
    SimGpu("A100 PCIE", "A100-40G-PCIe", "A100", 40960, 0.60, 1.30, 5),
    SimGpu("A100 SXM4", "A100-80G-SXM", "A100", 81920, 0.90, 1.90, 6),
    SimGpu("H100 PCIE", "H100-80G-PCIe", "H100", 81559, 1.60, 2.80, 5),
    SimGpu("H100 SXM", "H100-80G-SXM", "H100", 81559, 1.70, 3.20, 8),
    SimGpu("H200", "H200-141G-SXM", "H200", 143771, 2.20, 4.20, 3),
    SimGpu("B200", "B200-180G", "B200", 183359, 3.50, 6.50, 2),
)

# Two-letter country, and how Vast writes the place ("California, US").
SIM_LOCATIONS: tuple[tuple[str, str], ...] = (
    ("US", "California, US"), ("US", "Texas, US"), ("US", "Virginia, US"), ("US", "Oregon, US"),
    ("CA", "Quebec, CA"), ("DE", "Hesse, DE"), ("NL", "North Holland, NL"), ("SE", "Stockholm, SE"),
    ("GB", "England, GB"), ("FR", "Ile-de-France, FR"), ("FI", "Uusimaa, FI"), ("NO", "Oslo, NO"),
    ("JP", "Tokyo, JP"), ("KR", "Seoul, KR"), ("SG", "Singapore, SG"), ("AU", "New South Wales, AU"),
    ("IN", "Maharashtra, IN"), ("BR", "Sao Paulo, BR"), ("IL", "Tel Aviv, IL"), ("TW", "Taipei, TW"),
)


def price(rng: random.Random, gpu: SimGpu) -> float:
    return round(rng.uniform(gpu.price_low, gpu.price_high), 4)
