"""Importance levels: the four groups a latent position can belong to.

The order is the order of the substreams in an .sdc file and the value stored
in the region map: L1 = 0 (most important) ... other = 3 (background).
This module imports nothing heavy; the container, the CLI and the codec all
share it.
"""
from __future__ import annotations

LEVELS: tuple[str, ...] = ("L1", "L2", "L3", "other")
LEVEL_INDEX: dict[str, int] = {name: i for i, name in enumerate(LEVELS)}
OBJECT_LEVELS: tuple[str, ...] = LEVELS[:3]
# Quality of a level nobody chose one for. With the λ ladder of
# sdc.training.network it codes photos at about 0.6 bpp.
DEFAULT_QUALITY = 5


def parse_levels(text: str) -> tuple[str, ...]:
    """Parse "L1", "L1,L2", "all" (case-insensitive) into level names in stream order.

    Raises ValueError with a one-line message on anything else.
    """
    text = text.strip()
    if text.lower() == "all":
        return LEVELS
    names = []
    for part in text.split(","):
        part = part.strip()
        match = next((lv for lv in LEVELS if lv.lower() == part.lower()), None)
        if match is None:
            raise ValueError(f"unknown level {part!r}: expected one of {', '.join(LEVELS)} or 'all'")
        names.append(match)
    return tuple(lv for lv in LEVELS if lv in names)
