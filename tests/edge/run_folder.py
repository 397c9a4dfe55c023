"""Run an exported folder with edgelm's runtime and print the outputs as JSON.

    python run_folder.py FOLDER INPUTS_JSON

Runs unchanged on x86 and under aarch64 emulation, so the two can be compared.
"""

from __future__ import annotations

import json
import platform
import sys

import edgelm


def main() -> None:
    folder, inputs = sys.argv[1], json.loads(sys.argv[2])
    pipe = edgelm.Pipeline(folder, threads=1)
    if pipe.task.value == "text-generation":
        config = edgelm.GenerationConfig(max_new_tokens=inputs["max_new_tokens"])
        ids = [pipe._encode(p, config) for p in inputs["texts"]]
        out = [rows[0] for rows in pipe.generate_ids(ids, config)]
        texts = [pipe._text(t, i, o, config) for t, i, o in zip(inputs["texts"], ids, out)]
        logits, _ = pipe.runner.prefill([inputs["ids"]], len(inputs["ids"]), every_position=True)
        result = {"tokens": out, "texts": texts, "logits": logits[0].tolist()}
    else:
        result = {"outputs": pipe(inputs["texts"], top_k=len(pipe.manifest.labels))}
    print(json.dumps({"machine": platform.machine(), **result}))


if __name__ == "__main__":
    main()
