"""Every bound the runtime puts on a folder and on its inputs, in one place.

A folder is untrusted unless the caller says otherwise (`trust_folder=True`, which
relaxes only the file checks: see edgelm/folder.py), so each of its files has a size
cap and its manifest a size and a nesting depth. Inputs have bounds that keep the cost
of a call proportional to what it can use: text is cut by characters before it is
tokenized, stop strings and thread counts are capped, and chat templates render under
an output, work and time limit. The bounds are fixed: they are far above what real
models and inputs need (see each comment), so no option relaxes them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields

from edgelm.errors import ConfigError

KiB, MiB, GiB = 1 << 10, 1 << 20, 1 << 30


@dataclass(frozen=True, kw_only=True)
class Limits:
    # -- the folder ------------------------------------------------------------
    manifest_bytes: int = 4 * MiB  # edgelm.json: ~2 KB; labels of a 100k-class head fit
    manifest_depth: int = 8  # JSON nesting: edgelm writes 4 at most
    manifest_entries: int = 1_000_000  # list items / dict keys in any one field
    listed_files: int = 10_000  # entries in `files`
    graph_bytes: int = 2 * GiB  # an .onnx file: protobuf's own limit
    weights_bytes: int = 512 * GiB  # one external-data file (a 70B model in fp32 is 280 GB)
    tokenizer_bytes: int = 64 * MiB  # tokenizer.json: Gemma 3's 262k vocabulary is 33 MB
    config_bytes: int = 16 * MiB  # tokenizer_config.json and other JSON side files
    template_bytes: int = 256 * KiB  # a chat template: the largest known are ~20 KB
    graph_fields: int = 20_000_000  # protobuf fields walked for external data (~10 s)
    graph_depth: int = 64  # nested protobuf messages (subgraphs of If/Loop/Scan)
    # -- inputs -----------------------------------------------------------------
    # Text is cut to max_length * chars_per_token characters before tokenizing: no
    # tokenizer's tokens average more than a few characters, so the cut never changes
    # the ids of a text that fits the model (the result is still marked truncated).
    chars_per_token: int = 64
    threads_per_core: int = 4  # `threads` above this many per core is refused
    max_threads: int = 256  # and above this on any machine
    batch_size: int = 4096
    context_chars: int = 1 * MiB  # a question-answering context: ~1,000 windows of 384
    stops: int = 64  # stop strings per call
    stop_chars: int = 64 * KiB  # their total length; matching is linear in it anyway
    # -- chat templates ---------------------------------------------------------
    template_chars: int = 1 * MiB  # output allowed beyond 4x the messages' own length
    template_work: int = 32  # characters all its operations may produce, x the output limit
    template_seconds: float = 2.0  # real templates render in milliseconds

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise ConfigError(f"Limits.{f.name}={value!r} must be a positive number")

    def thread_cap(self) -> int:
        """The most `threads` this machine accepts."""
        return min(self.max_threads, self.threads_per_core * (os.cpu_count() or 1))

    def text_chars(self, tokens: int) -> int:
        """The characters kept of a text that may use `tokens` tokens."""
        return max(1, tokens) * self.chars_per_token


LIMITS = Limits()
