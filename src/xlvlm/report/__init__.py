"""The HTML report."""

from xlvlm.report.html import build_report

__all__ = ["build_report"]
