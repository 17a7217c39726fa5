"""`gpusupply sandbox --stock N` (SandboxConfig.stock): every Nebula product and fal instance type
starts with N units, so a large run (the scale benchmark) is not limited by the seeded inventory."""

from __future__ import annotations

from gpusupply.sandbox.common import SandboxConfig
from gpusupply.sandbox.fal import FalSandbox
from gpusupply.sandbox.nebula import NebulaSandbox


def test_stock_sets_every_product_and_type() -> None:
    fal = FalSandbox(SandboxConfig(seed=3, stock=500))
    nebula = NebulaSandbox(SandboxConfig(seed=3, stock=500))
    assert fal.stock and set(fal.stock.values()) == {500}
    assert nebula.products and {p.stock for p in nebula.products.values()} == {500}


def test_without_stock_the_seeded_inventory_stays() -> None:
    assert set(FalSandbox(SandboxConfig(seed=3)).stock.values()) != {500}
    assert sum(p.stock for p in NebulaSandbox(SandboxConfig(seed=3)).products.values()) < 500 * 51
