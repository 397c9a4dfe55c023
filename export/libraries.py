"""transformers, imported quiet: no progress bars, no advice, errors only."""

from __future__ import annotations

import transformers

transformers.utils.logging.disable_progress_bar()
transformers.utils.logging.set_verbosity_error()
