"""`edgelm bench`: PyTorch and ONNX variants measured side by side, each in its own process.

`edgelm.bench.report` (tables, charts; rich and matplotlib) is imported on use.
"""

from edgelm.bench.run import BenchReport, run_bench
from edgelm.bench.spec import BenchOptions, Point, VariantResult

__all__ = ["BenchOptions", "BenchReport", "Point", "VariantResult", "run_bench"]
