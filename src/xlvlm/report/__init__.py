"""The HTML report."""

from xlvlm.report.html import build_report
from xlvlm.report import patching as _patching  # noqa: F401  (registers the section of stage "patch")

__all__ = ["build_report"]
