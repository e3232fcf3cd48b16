"""How a sweep steered, in words: read by the sweep's own summary and by the report.

Its own module so that the report (which renders a sweep's ``result.json``) does not import the sweep's
runner (:mod:`xlvlm.steer.run`, generation and plotting).
"""

from __future__ import annotations


def describe_settings(settings: dict) -> str:
    """One line: where, how and when the sweep steered (``settings``: the sweep result's ``settings``)."""
    condition = settings.get("condition")
    when = (f"only samples past the condition at layer {condition.get('layer')}" if isinstance(condition, dict)
            else "every sample (no condition)")
    return (f"Positions: {settings.get('positions', 'all')}; operator: {settings.get('operator', 'add')}"
            f"{', unit-norm vectors' if settings.get('normalize') else ''}; steered: {when}.")
