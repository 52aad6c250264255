"""What the backbone's weights actually were in training, as found on the loaded model.

`backbone_dtype: int4` asks bitsandbytes to quantize; whether it did is a fact of the loaded
modules, not of the setting. Training measures it (llm_studio/models/backbone.py), logs it and
writes it to `weights.json` in the experiment folder; the model card reads it from there. No
torch import: the UI renders model cards too.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

QUANTIZED = ("int4", "int8")


@dataclass
class WeightsReport:
    requested: str  # architecture.backbone_dtype
    compute_dtype: str  # the float type activations and unquantized weights use, e.g. "float32"
    # Linear layers by class ("bitsandbytes Linear4bit", "torch Linear") and by weight storage.
    linear_layers: dict[str, int] = field(default_factory=dict)
    storage: dict[str, int] = field(default_factory=dict)
    quantized_layers: int = 0
    quant_type: str | None = None  # nf4 / fp4 for 4-bit

    @property
    def applied(self) -> str:
        """int4, int8 (when quantized layers were loaded) or the float dtype."""
        if not self.quantized_layers:
            return self.compute_dtype
        return "int4" if any("4bit" in name for name in self.linear_layers) else "int8"

    def summary(self) -> str:
        """One line for the log and the model card."""
        total = sum(self.linear_layers.values())
        if not self.quantized_layers:
            text = f"{self.compute_dtype} (all {total} linear layers unquantized)"
            if self.requested in QUANTIZED:
                text += f"; {self.requested} was asked for but not applied"
            return text
        kinds = ", ".join(f"{n} {name}" for name, n in sorted(self.linear_layers.items()))
        stored = ", ".join(f"{n} in {dtype}" for dtype, n in sorted(self.storage.items()))
        how = f"bitsandbytes {self.quant_type}" if self.quant_type else "bitsandbytes"
        text = (
            f"{self.applied} ({how}): {self.quantized_layers} of {total} linear layers quantized "
            f"({kinds}; weights stored {stored}), computing in {self.compute_dtype}"
        )
        if self.requested != self.applied:
            text += f"; {self.requested} was asked for"
        return text

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "applied": self.applied}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> WeightsReport:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)
