"""The real static-ct (tiled) log snapshot of the shared CT data, Navigli 2025h2: its tile
folder `NAVIGLI`, its recorded facts `FACTS`, and its first 1024 entries parsed from the
data tiles (`navigli_leaves()`)."""

from __future__ import annotations

import json
from functools import cache

from ctlib.ct.tiles import TILE_WIDTH, TileLeaf, parse_data_tile
from tests.paths import CTDATA

NAVIGLI = CTDATA / "static-ct" / "navigli2025h2" / "tile"
FACTS = json.loads((CTDATA / "expected_decoded_facts.json").read_text())["navigli"]


@cache
def navigli_leaves() -> tuple[TileLeaf, ...]:
    leaves: list[TileLeaf] = []
    for n in range(4):
        leaves += parse_data_tile((NAVIGLI / "data" / f"{n:03d}").read_bytes(), n, TILE_WIDTH)
    return tuple(leaves)
