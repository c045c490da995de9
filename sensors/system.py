"""Process limits shared by the collector and the sensor simulator."""

from __future__ import annotations

import logging
import resource

logger = logging.getLogger(__name__)


def raise_file_limit(wanted: int) -> int:
    """Lift the soft open-files limit towards `wanted` (one socket per board); return the limit now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return wanted
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    if soft < wanted:
        logger.warning(
            "open-files limit is %d, below the %d wanted; raise it (supervisor: minfds, shell: ulimit -n)",
            soft,
            wanted,
        )
    return soft
