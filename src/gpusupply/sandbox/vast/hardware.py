"""The Vast marketplace's machines: GPU traits, CPUs, disks, drivers, OS versions, addresses."""

from __future__ import annotations

from dataclasses import dataclass

from gpusupply.sandbox.inventory import SIM_LOCATIONS

IP_BLOCKS = ("203.0.113", "198.51.100", "192.0.2")  # documentation ranges

# ----- the machines' GPUs ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GpuTraits:
    compute_cap: int
    tflops: float  # per GPU, what `total_flops` adds up
    dlperf: float  # per GPU
    mem_bw: float  # GB/s
    max_power: int  # W
    nvlink: float  # GB/s, 0 for PCIe cards
    counts: tuple[int, ...]  # GPUs per offer
    count_weights: tuple[float, ...]
    datacenter_share: float  # how many of its machines are in datacenters


DEFAULT_TRAITS = GpuTraits(800, 50.0, 20.0, 900.0, 300, 0.0, (1, 2, 4, 8), (0.4, 0.3, 0.2, 0.1), 0.3)
GPU_TRAITS: dict[str, GpuTraits] = {
    "RTX 4090": GpuTraits(890, 82.6, 30.0, 1008.0, 450, 0.0, (1, 2, 4, 8), (0.45, 0.25, 0.15, 0.15), 0.15),
    "RTX 3090": GpuTraits(860, 35.6, 17.0, 936.0, 350, 0.0, (1, 2, 4, 8), (0.4, 0.25, 0.2, 0.15), 0.1),
    "RTX 5090": GpuTraits(1200, 104.8, 40.0, 1792.0, 575, 0.0, (1, 2, 4, 8), (0.5, 0.25, 0.15, 0.1), 0.2),
    "RTX A6000": GpuTraits(860, 38.7, 20.0, 768.0, 300, 112.5, (1, 2, 4, 8), (0.3, 0.3, 0.2, 0.2), 0.5),
    "L40S": GpuTraits(890, 91.6, 38.0, 864.0, 350, 0.0, (1, 2, 4, 8), (0.3, 0.2, 0.2, 0.3), 0.8),
    "L4": GpuTraits(890, 30.3, 12.0, 300.0, 72, 0.0, (1, 2, 4, 8), (0.5, 0.2, 0.2, 0.1), 0.8),
    "A100 PCIE": GpuTraits(800, 77.9, 45.0, 1555.0, 250, 0.0, (1, 2, 4, 8), (0.3, 0.2, 0.2, 0.3), 0.8),
    "A100 SXM4": GpuTraits(800, 77.9, 50.0, 2039.0, 400, 600.0, (1, 2, 4, 8), (0.2, 0.1, 0.2, 0.5), 0.9),
    "H100 PCIE": GpuTraits(900, 204.9, 80.0, 2039.0, 350, 0.0, (1, 2, 4, 8), (0.3, 0.2, 0.2, 0.3), 0.9),
    "H100 SXM": GpuTraits(900, 267.6, 100.0, 3352.0, 700, 900.0, (1, 2, 4, 8), (0.2, 0.1, 0.1, 0.6), 0.95),
    "H200": GpuTraits(900, 267.6, 110.0, 4800.0, 700, 900.0, (1, 2, 4, 8), (0.2, 0.1, 0.1, 0.6), 0.95),
    "B200": GpuTraits(1000, 496.0, 190.0, 8000.0, 1000, 1800.0, (1, 2, 4, 8), (0.1, 0.1, 0.1, 0.7), 1.0),
}
CPU_NAMES = ("AMD EPYC 7763 64-Core Processor", "AMD EPYC 9554 64-Core Processor", "Intel Xeon Platinum 8480+",
             "AMD Ryzen 9 7950X 16-Core Processor", "Intel Core i9-13900K", "AMD Ryzen Threadripper PRO 5975WX 32-Cores")
DISK_NAMES = ("Samsung SSD 990 PRO 2TB", "INTEL SSDPE2KX040T8", "WD_BLACK SN850X 4000GB", "Micron_7450_MTFDKCC3T8TFR", "KIOXIA KCD81RUG7T68")
MOBO_NAMES = ("ROMED8-2T", "H13SSL-N", "X13DEG-QT", "ProArt X670E-CREATOR", "WRX80 Creator", "G493-ZB3-AAP1")
# CUDA version the driver supports -> driver version string
DRIVERS = ((12.2, "535.183.01"), (12.4, "550.127.05"), (12.6, "560.35.03"), (12.8, "570.124.04"))
OS_VERSIONS = ("20.04", "22.04", "24.04")
VERIFICATIONS = ("verified", "unverified", "deverified")
VERIFICATION_WEIGHTS = (0.85, 0.13, 0.02)
LOCATION_WEIGHTS = tuple(10.0 if c == "US" else 5.0 if c in ("CA", "DE", "NL", "GB", "SE") else 2.0 for c, _ in SIM_LOCATIONS)


def driver_number(version: str) -> int | None:
    """'535.86.05' -> 535086005, the way the CLI compares driver versions."""
    parts = version.strip().split(".")
    if len(parts) != 3 or not all(p.isdigit() for p in parts):
        return None
    major, minor, patch = (int(p) for p in parts)
    return major * 1_000_000 + minor * 1_000 + patch


def public_ip(machine_id: int) -> str:
    return f"{IP_BLOCKS[(machine_id // 254) % len(IP_BLOCKS)]}.{machine_id % 254 + 1}"
