"""Who a sensor is: its board's Wi-Fi MAC address, in one spelling.

Plain Python with no Django import (`make lint` enforces it): the wire parser, the models,
the URLs and the export all normalise through `normalise_mac`, so ``5C-CF-7F-0A-1B-2C``,
``5ccf7f0a1b2c`` and ``5c:cf:7f:0a:1b:2c`` are one sensor everywhere.
"""

from __future__ import annotations

import re

_MAC_SEPARATED_RE = re.compile(r"[0-9a-f]{2}([:-])[0-9a-f]{2}(?:\1[0-9a-f]{2}){4}\Z")
_MAC_BARE_RE = re.compile(r"[0-9a-f]{12}\Z")


def normalise_mac(text: str) -> str | None:
    """Return the MAC as lowercase ``aa:bb:cc:dd:ee:ff``, or None if it is not one."""
    value = text.strip().lower()
    if _MAC_SEPARATED_RE.match(value):
        digits = value.replace(value[2], "")
    elif _MAC_BARE_RE.match(value):
        digits = value
    else:
        return None
    return ":".join(digits[i : i + 2] for i in range(0, 12, 2))
