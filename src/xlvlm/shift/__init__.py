"""Fine-tuning shift analysis between an original and a fine-tuned model."""

from xlvlm.lazy import lazy_exports

# public name -> the module that defines it, imported on first use: the command line reads
# xlvlm.shift.registry without paying for torch
_EXPORTS = {
    **dict.fromkeys(("analyse_shift", "ShiftResult", "ShiftSettings", "matched_features", "shift_statistics"),
                    "xlvlm.shift.analysis"),
    "write_shift": "xlvlm.shift.outputs",
}
__all__ = list(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
