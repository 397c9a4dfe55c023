"""`edgelm bench`: PyTorch and ONNX variants measured side by side, each in its own process."""

from edgelm.bench import report
from edgelm.bench.run import BenchReport, run_bench
from edgelm.bench.spec import BenchOptions, Point, VariantResult

__all__ = ["BenchOptions", "BenchReport", "Point", "VariantResult", "report", "run_bench"]
