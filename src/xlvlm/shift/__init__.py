"""Fine-tuning shift analysis between an original and a fine-tuned model."""

from xlvlm.shift.analysis import ShiftResult, ShiftSettings, analyse_shift, matched_features, shift_statistics
from xlvlm.shift.outputs import write_shift

__all__ = ["analyse_shift", "ShiftResult", "ShiftSettings", "matched_features", "shift_statistics", "write_shift"]
