"""Export a trained run for fast serving: an ONNX graph (fp32, and int8 with onnxruntime), behind a parity gate.

    import goldmine
    goldmine.export("runs/intents", quantize="int8")   # -> runs/intents/onnx/{model,model.int8}.onnx, parity.json
    goldmine.Model.load("runs/intents")                 # now runs on onnx-int8 (the fastest export present)

Modules: `onnx` (trace the network), `quantize` (int8), `parity` (the gate), `exporter` (the recipe).
"""

from __future__ import annotations

import sys
import types
from typing import Any

__all__ = ["ExportResult", "ParityError", "export_model"]


def export_model(*args: Any, **kwargs: Any):
    """See `goldmine.export.exporter.export_model` (imported on first use: it pulls in torch and onnx)."""
    from goldmine.export.exporter import export_model as run

    return run(*args, **kwargs)


def __getattr__(name: str):
    if name == "ExportResult":
        from goldmine.export.exporter import ExportResult

        return ExportResult
    if name == "ParityError":
        from goldmine.export.parity import ParityError

        return ParityError
    raise AttributeError(name)


class _CallableModule(types.ModuleType):
    """`goldmine.export` is both this package and the API function `goldmine.export(run_dir, ...)`.

    Importing a submodule sets the package as the attribute `goldmine.export`, which would shadow a function
    of that name; making the package callable keeps `goldmine.export(...)` working either way.
    """

    def __call__(self, *args: Any, **kwargs: Any):
        return export_model(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
