"""Which worker may run which leg: declared capabilities, and what the probe found.

Two layers: a builder lists only workers that *declare* every capability its leg requires
(static), and before a plasma build starts the master checks what the worker's probe
*found* (dynamic).  A probe result missing or unreadable counts as "found nothing".
"""

from __future__ import annotations

import json

from .props import INFO_KEY


def probed(info_value) -> dict | None:
    """The probe's JSON as the worker reported it in its ``info/`` directory, or None."""
    if isinstance(info_value, dict):
        return info_value
    if not isinstance(info_value, str) or not info_value.strip():
        return None
    try:
        value = json.loads(info_value)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def probed_capabilities(report: dict | None) -> frozenset[str]:
    if not report:
        return frozenset()
    caps = report.get("capabilities")
    return frozenset(c for c in caps if isinstance(c, str)) if isinstance(caps, list) else frozenset()


def worker_report(worker) -> dict | None:
    """The probe report of a Buildbot worker object (remote or local)."""
    info = getattr(worker, "info", None)
    if info is None:
        return None
    return probed(info.getProperty(INFO_KEY))


def missing_capabilities(required: frozenset[str], report: dict | None) -> list[str]:
    return sorted(required - probed_capabilities(report))


def refusal_reason(required: frozenset[str], report: dict | None) -> str:
    """Why a worker's probe rules it out, in the probe's own words."""
    if report is None:
        return "no probe report from this worker (run the probe with --write-info <worker>/info)"
    reasons = []
    for name in missing_capabilities(required, report):
        # "qemu" needs both qemu-system-x86_64 and qemu-img: report whichever failed.
        parts = ("qemu", "qemu_img") if name == "qemu" else (name,)
        details = [report[p].get("detail") for p in parts
                   if isinstance(report.get(p), dict) and not report[p].get("ok")]
        reasons.append(f"{name}: {'; '.join(d for d in details if d) or 'not found by the probe'}")
    return "; ".join(reasons)
