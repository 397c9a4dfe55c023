"""The `edgelm` command. Errors become one line and a non-zero exit here, once."""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path
from typing import Any, Callable

import click
import numpy as np

from edgelm import __version__
from edgelm.cli_bench import bench
from edgelm.cli_cache import cache
from edgelm.errors import ConfigError, EdgeLMError
from edgelm.manifest import read_manifest
from edgelm.types import Device, Precision, Target, Task


class _Group(click.Group):
    """Turns EdgeLMError into `error: ...` and exit code 1 (traceback with --debug)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except EdgeLMError as e:
            if ctx.obj and ctx.obj.get("debug"):
                raise
            click.echo(f"error: {e}", err=True)
            sys.exit(1)
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except Exception as e:
            if ctx.obj and ctx.obj.get("debug"):
                raise
            click.echo(f"error: unexpected {type(e).__name__}: {str(e)[:300]} "
                       "(run with --debug for the traceback)", err=True)
            sys.exit(2)


@click.group(cls=_Group)
@click.version_option(__version__, prog_name="edgelm")
@click.option("--debug", is_flag=True, help="Show tracebacks and debug logs.")
@click.pass_context
def main(ctx: click.Context, debug: bool) -> None:
    """Export Hugging Face checkpoints to fast ONNX folders and run them torch-free."""
    ctx.obj = {"debug": debug}
    logging.basicConfig(level=logging.DEBUG if debug else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")


@main.command(short_help="Export a Hugging Face checkpoint to a validated ONNX folder.")
@click.argument("model_dir", type=click.Path(path_type=Path))
@click.option("-o", "--output", type=click.Path(path_type=Path), default=None,
              help="Output folder [default: MODEL_DIR-edgelm-PRECISION].")
@click.option("--precision", type=click.Choice(Precision.values()), default=None,
              help="[default: int8 for --target cpu, fp16 for cuda]")
@click.option("--target", type=click.Choice(Target.values()), default="cpu", show_default=True,
              help="Where the export will run.")
@click.option("--task", type=click.Choice(Task.values()), default=None,
              help="Override the task detected from config.architectures.")
@click.option("--keep-float", default="", metavar="GROUPS",
              help="int8: leave these node groups in float, comma-separated: "
                   "first-layer, attention (the most accuracy-sensitive; slower).")
@click.option("--block-size", type=int, default=32, show_default=True,
              help="int4/int8 decoders: weights per quantization block, at most: a "
                   "matrix whose rows it does not divide gets the largest power of two "
                   "below it that does (larger: faster, less accurate; see the README).")
@click.option("--table-bits", type=click.Choice(["8", "4"]), default="8", show_default=True,
              help="int4/int8 decoders: bits of a tied embedding table (4: half its size "
                   "and read per token, less accurate).")
@click.option("--force", is_flag=True, help="Replace an existing output folder.")
@click.option("--trust-pickle", is_flag=True,
              help="Allow pytorch_model.bin weights (loaded with weights_only=True).")
@click.option("-q", "--quiet", is_flag=True, help="No progress output.")
def export(model_dir: Path, output: Path | None, precision: str | None, target: str,
           task: str | None,
           keep_float: str, block_size: int, table_bits: str, force: bool, trust_pickle: bool,
           quiet: bool) -> None:
    """Export MODEL_DIR (a Hugging Face checkpoint) to a validated ONNX folder."""
    from edgelm._extras import load_export

    steps = _Steps()  # its clock starts here: the first stamp includes importing torch
    export_module = load_export()
    # config.json alone says whether the checkpoint can be exported: no torch import
    # (seconds) before refusing one.
    from edgelm.export.architectures import identify

    if (model_dir / "config.json").is_file():
        identify(model_dir, Task(task) if task else None)
    options = export_module.ExportOptions(
        precision=Precision(precision) if precision else None, target=Target(target),
        task=Task(task) if task else None,
        force=force, trust_pickle=trust_pickle, block_size=block_size,
        table_bits=int(table_bits),
        keep_float=tuple(k.strip() for k in keep_float.split(",") if k.strip()),
    )
    suffix = options.precision.value + ("" if options.target is Target.CPU else f"-{target}")
    output = output or model_dir.with_name(f"{model_dir.name}-edgelm-{suffix}")
    if quiet:
        export_module.export_model(model_dir, output, options)
        return
    with steps:
        manifest = export_module.export_model(model_dir, output, options, progress=steps)
    _print_summary(output, manifest, stderr=True)


class _Steps:
    """Draws the library's progress messages, each the start of a step, with their times.

    On a terminal, one rich line per step whose clock runs until the next step starts;
    elsewhere (logs, pipes) one plain line per step, stamped with the time since the start.
    """

    def __init__(self) -> None:
        self._start = time.perf_counter()
        self._bar: Any = None
        self._task: Any = None
        if getattr(sys.stderr, "isatty", lambda: False)():
            from rich.console import Console
            from rich.progress import Progress, SpinnerColumn, TextColumn

            self._bar = Progress(SpinnerColumn(finished_text="[green]✓"),
                                 TextColumn("{task.description}", markup=False),
                                 TextColumn("[cyan]{task.elapsed:.1f} s"),
                                 console=Console(stderr=True))

    def __enter__(self) -> _Steps:
        if self._bar is not None:
            self._bar.start()
        return self

    def __call__(self, message: str) -> None:
        if self._bar is None:
            click.echo(f"[{time.perf_counter() - self._start:6.1f} s] {message}", err=True)
            return
        self._end_step()
        self._task = self._bar.add_task(message, total=1)

    def __exit__(self, failed: type[BaseException] | None, *_: Any) -> None:
        if self._bar is None:
            return
        if failed is not None and self._task is not None:  # the error line says what failed
            self._bar.remove_task(self._task)
            self._task = None
        self._end_step()
        self._bar.stop()

    def _end_step(self) -> None:
        if self._task is not None:
            self._bar.update(self._task, completed=1)
            self._bar.stop_task(self._task)


_TRUST_FOLDER = click.option(
    "--trust-folder", is_flag=True,
    help="Open the folder's files without the listing, sha256, size and stay-inside-the-"
         "folder checks (folders you built or vetted only; see README: Threat model).")
_PACKED_CACHE = click.option(
    "--packed-cache/--no-packed-cache", default=None,
    help="Keep onnxruntime's packed weights on disk, so later loads map them instead of "
         "packing again [default: on for folders exported for a board or phone].")


@main.command(short_help="Run an exported folder on texts and print the results.")
@click.argument("folder", type=click.Path(path_type=Path))
@click.argument("texts", nargs=-1, required=True)
@click.option("--top-k", type=int, default=1, show_default=True,
              help="Labels per text (classification), answers per question.")
@click.option("--context", default=None,
              help="The text question-answering folders answer from (TEXTS are questions).")
@click.option("--device", type=click.Choice(Device.values()), default="auto", show_default=True)
@click.option("--threads", type=int, default=None, help="CPU threads [default: all cores].")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@_TRUST_FOLDER
@_PACKED_CACHE
def run(folder: Path, texts: tuple[str, ...], top_k: int, context: str | None, device: str,
        threads: int | None, as_json: bool, trust_folder: bool,
        packed_cache: bool | None) -> None:
    """Run an exported FOLDER on TEXTS and print the results."""
    from edgelm.pipelines import (
        Pipeline,
        QuestionAnsweringPipeline,
        Text2TextGenerationPipeline,
        TextClassificationPipeline,
        TextGenerationPipeline,
    )

    pipe = Pipeline(folder, device=device, threads=threads, trust_folder=trust_folder,
                    packed_cache=packed_cache)
    if (context is not None) != isinstance(pipe, QuestionAnsweringPipeline):
        raise click.UsageError("--context goes with question-answering folders, and they "
                               f"need it; {folder} holds a {pipe.task.value} model")
    if isinstance(pipe, QuestionAnsweringPipeline):
        assert context is not None
        results: Any = pipe(question=list(texts), context=context, top_k=top_k)
    elif isinstance(pipe, (TextGenerationPipeline, Text2TextGenerationPipeline)):
        results = [r[0]["generated_text"] for r in pipe(list(texts))]
    elif isinstance(pipe, TextClassificationPipeline):
        results = pipe(list(texts), top_k=top_k)
    else:
        results = pipe(list(texts))
    if isinstance(results, np.ndarray):
        results = results.tolist()
    if as_json:
        click.echo(json.dumps(results, ensure_ascii=False))
        return
    for text, result in zip(texts, results):
        click.echo(f"{text!r}: {_short(result)}")


def _generation_options(*, stream: bool) -> Callable[[Any], Any]:
    """The options `generate` and `chat` share; `stream` is the command's default."""
    options = [
        click.option("--max-new-tokens", type=int, default=64, show_default=True),
        click.option("--min-new-tokens", type=int, default=0, show_default=True),
        click.option("--num-beams", type=int, default=1, show_default=True),
        click.option("--temperature", type=float, default=None,
                     help="Sample with this temperature (0: greedy) [default: greedy]."),
        click.option("--top-k", type=int, default=None, help="Sample from the k likeliest."),
        click.option("--top-p", type=float, default=None, help="Nucleus sampling."),
        click.option("--repetition-penalty", type=float, default=1.0, show_default=True),
        click.option("--seed", type=int, default=None, help="Reproducible sampling."),
        click.option("--stop", multiple=True, help="Stop at this string (repeatable)."),
        click.option("--device", type=click.Choice(Device.values()), default="auto",
                     show_default=True),
        click.option("--threads", type=int, default=None,
                     help="CPU threads [default: all cores]."),
        click.option("--stream/--no-stream", default=stream, show_default=True,
                     help="Print the text piece by piece as tokens are decoded."),
        click.option("--json", "as_json", is_flag=True,
                     help="Print JSON (whole texts, so no streaming)."),
        _TRUST_FOLDER,
        _PACKED_CACHE,
    ]

    def apply(f: Any) -> Any:
        for option in reversed(options):
            f = option(f)
        return f

    return apply


def _options(values: dict[str, Any]) -> dict[str, Any]:
    """CLI values -> generation options, leaving out what was not given."""
    names = ("max_new_tokens", "min_new_tokens", "num_beams", "temperature", "top_k", "top_p",
             "repetition_penalty", "seed")
    options = {k: values[k] for k in names if values.get(k) is not None}
    if values.get("stop"):
        options["stop"] = tuple(values["stop"])
    return options


def _check_json(ctx: click.Context, stream: bool, as_json: bool) -> bool:
    """Whether to stream: never with --json (whole texts), which an explicit --stream refuses."""
    given = ctx.get_parameter_source("stream") is click.core.ParameterSource.COMMANDLINE
    if as_json and stream and given:
        raise click.UsageError("--json prints whole texts; drop --stream or --json")
    return stream and not as_json


def _generation_pipeline(folder: Path, values: dict[str, Any], *, seq2seq: bool = True
                         ) -> Any:
    """The folder's TextGenerationPipeline (or, with seq2seq, its encoder-decoder's
    Text2TextGenerationPipeline); another task is refused before any loading."""
    from edgelm.pipelines import Pipeline, Text2TextGenerationPipeline, TextGenerationPipeline

    task = read_manifest(folder, verify=False).task
    kinds: dict[Task, type[Pipeline]] = {Task.TEXT_GENERATION: TextGenerationPipeline}
    if seq2seq:
        kinds[Task.TEXT2TEXT_GENERATION] = Text2TextGenerationPipeline
    if task not in kinds:
        raise ConfigError(f"{folder} holds a {task.value} model; use `edgelm run`")
    return kinds[task](folder, device=values["device"], threads=values["threads"],
                       trust_folder=values["trust_folder"], packed_cache=values["packed_cache"])


@main.command(short_help="Continue a prompt with a text-generation folder.")
@click.argument("folder", type=click.Path(path_type=Path))
@click.argument("prompt")
@_generation_options(stream=False)
@click.pass_context
def generate(ctx: click.Context, folder: Path, prompt: str, stream: bool, as_json: bool,
             **values: Any) -> None:
    """Continue PROMPT with the text-generation model in FOLDER, or, for an
    encoder-decoder (T5, BART, Marian), summarize or translate it.

    Prints the whole text when it is done; --stream prints it as tokens are decoded,
    --json prints the results as JSON.
    """
    stream = _check_json(ctx, stream, as_json)
    pipe = _generation_pipeline(folder, values)
    options = _options(values)
    if stream:
        if pipe.task is Task.TEXT_GENERATION:
            click.echo(prompt, nl=False)
        for piece in pipe.stream(prompt, **options):
            click.echo(piece, nl=False)
        click.echo()
        return
    results = pipe(prompt, **options)
    if as_json:
        click.echo(json.dumps(results, ensure_ascii=False))
    else:
        click.echo("\n---\n".join(r["generated_text"] for r in results))


@main.command(short_help="Chat with a text-generation folder, one line per turn.")
@click.argument("folder", type=click.Path(path_type=Path))
@click.option("--system", default=None, help="A system message to start with.")
@_generation_options(stream=True)
@click.pass_context
def chat(ctx: click.Context, folder: Path, system: str | None, stream: bool, as_json: bool,
         **values: Any) -> None:
    """Chat with the model in FOLDER (its chat template); an empty line or Ctrl-D ends.

    Replies stream as tokens are decoded; --no-stream prints each reply at once.
    --json prints one JSON object per reply, {"role": "assistant", "content": ...},
    on its own line of stdout (the "you>" prompt goes to stderr).
    """
    stream = _check_json(ctx, stream, as_json)
    pipe = _generation_pipeline(folder, values, seq2seq=False)
    options = _options(values)
    messages = [{"role": "system", "content": system}] if system else []
    while (line := _read_turn(prompt_to_stderr=as_json)) is not None:
        messages.append({"role": "user", "content": line})
        reply = _reply(pipe, messages, options, stream=stream, as_json=as_json)
        messages.append({"role": "assistant", "content": reply})


def _read_turn(*, prompt_to_stderr: bool) -> str | None:
    """The user's next line; None at an empty line, Ctrl-D or Ctrl-C."""
    try:
        if prompt_to_stderr:  # stdout carries only JSON lines
            click.echo("you> ", nl=False, err=True)
            line = sys.stdin.readline()
        else:
            line = click.prompt("you", prompt_suffix="> ", default="", show_default=False)
    except (EOFError, KeyboardInterrupt, click.Abort):
        return None
    return line.rstrip("\r\n") if line.strip() else None


def _reply(pipe: Any, messages: list[dict[str, str]], options: dict[str, Any], *,
           stream: bool, as_json: bool) -> str:
    """Generate and print the assistant's reply to `messages`; returns it."""
    if as_json:
        reply = pipe.chat(messages, stream=False, **options)
        click.echo(json.dumps({"role": "assistant", "content": reply}, ensure_ascii=False))
        return str(reply)
    click.echo("assistant> ", nl=False)
    if not stream:
        reply = pipe.chat(messages, stream=False, **options)
        click.echo(reply)
        return str(reply)
    reply = ""
    for piece in pipe.chat(messages, stream=True, **options):
        reply += piece
        click.echo(piece, nl=False)
    click.echo()
    return reply


@main.command(short_help="Summarize an exported folder's manifest and check its files.")
@click.argument("folder", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the whole manifest.")
@_TRUST_FOLDER
def info(folder: Path, as_json: bool, trust_folder: bool) -> None:
    """Summarize an exported FOLDER's manifest (and check its files)."""
    manifest = read_manifest(folder, verify=not trust_folder)
    if as_json:
        click.echo(manifest.to_json(), nl=False)
    else:
        _print_summary(folder, manifest, stderr=False)


@main.command(short_help="Serve exported folders over OpenAI-compatible HTTP endpoints.")
@click.argument("folders", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to bind; 0.0.0.0 exposes the server to the network.")
@click.option("--port", type=int, default=8000, show_default=True)
@click.option("--threads", type=int, default=None, help="CPU threads per model.")
@click.option("--max-batch", type=int, default=8, show_default=True,
              help="Rows of a generation batch / texts of an encoder batch.")
@click.option("--max-context", type=int, default=None,
              help="Cache positions per generation row [default: the model's maximum, "
                   "at most 2048].")
@click.option("--api-key", default=None, envvar="EDGELM_API_KEY",
              help="Require 'Authorization: Bearer KEY' (also $EDGELM_API_KEY).")
@click.option("--name", "names", multiple=True,
              help="Model name, once per folder in order [default: the folder's name].")
@click.option("--ray", "on_ray", is_flag=True,
              help="Deploy on Ray Serve (the cluster this machine is in, else a local one).")
@click.option("--replicas", type=int, default=1, show_default=True,
              help="With --ray: copies of the server, each loading the folders once.")
@click.option("--ray-address", default=None,
              help="With --ray: the cluster to join [default: $RAY_ADDRESS or this machine's].")
@_TRUST_FOLDER
@click.option("--packed-cache/--no-packed-cache", default=True, show_default=True,
              help="Keep onnxruntime's packed weights on disk: restarts map them instead of "
                   "packing again, and decoding reads them as file pages (README: Edge).")
@click.pass_context
def serve(ctx: click.Context, folders: tuple[Path, ...], host: str, port: int,
          threads: int | None, max_batch: int, max_context: int | None, api_key: str | None,
          names: tuple[str, ...], on_ray: bool, replicas: int, ray_address: str | None,
          trust_folder: bool, packed_cache: bool) -> None:
    """Serve FOLDERS: /v1/chat/completions, /v1/completions, /v1/embeddings, /v1/classify."""
    from edgelm.errors import MissingDependencyError

    try:
        from edgelm.serve.options import ServeOptions
        from edgelm.serve.run import serve as run_server
    except ModuleNotFoundError as e:
        if (e.name or "").startswith("edgelm"):
            raise
        raise MissingDependencyError(e.name or "starlette", "serve") from e
    options = ServeOptions(host=host, port=port, threads=threads, max_batch=max_batch,
                           max_context=max_context, api_key=api_key, names=names,
                           trust_folder=trust_folder, packed_cache=packed_cache)
    if not on_ray:
        if replicas != 1 or ray_address:
            raise ConfigError("--replicas and --ray-address need --ray")
        debug = bool(ctx.obj and ctx.obj.get("debug"))
        run_server(list(folders), options, log_level="debug" if debug else "info")
        return
    try:
        from edgelm.serve.ray_serve import serve_on_ray
    except ModuleNotFoundError as e:
        if (e.name or "").startswith("edgelm"):
            raise
        raise MissingDependencyError(e.name or "ray", "ray") from e
    serve_on_ray(list(folders), options, replicas=replicas, address=ray_address)


def _short(result: Any) -> str:
    if isinstance(result, list) and result and isinstance(result[0], float):
        head = ", ".join(f"{x:.4f}" for x in result[:4])
        return f"[{head}, ...] ({len(result)} dims)"
    return json.dumps(result, ensure_ascii=False)


# What the "vs PyTorch" row should read at each precision, and where the figures are.
_EXPECTED = {
    Precision.FP32: "a tight match: the export fails past the architecture's tolerance",
    Precision.FP16: "half precision: a small drift; agreement or cosine close to 1",
    Precision.INT8: "a small drift; agreement or cosine close to 1",
    Precision.INT4: "weight-only 4-bit: logits drift by several units and greedy agreement "
                    "around 0.7 is normal for small models; judge it by task quality",
}
_READ_MORE = {
    True: "README: Decoding performance and quality; `edgelm bench MODEL_DIR --text FILE` "
          "measures perplexity",
    False: "README: Accuracy; `edgelm bench MODEL_DIR --data FILE` measures task accuracy",
}


def _print_summary(folder: Path, manifest: Any, *, stderr: bool) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=str(folder), show_header=False)
    table.add_row("task", manifest.task.value)
    table.add_row("architecture", manifest.architecture)
    table.add_row("precision", manifest.precision.value)
    table.add_row("max length", str(manifest.max_length))
    if manifest.labels:
        table.add_row("labels", ", ".join(manifest.labels[:8]))
    table.add_row("fused ops", ", ".join(f"{k} {v}" for k, v in manifest.fused_ops.items()))
    size = sum((folder / name).stat().st_size for name in manifest.files
               if (folder / name).is_file())
    table.add_row("size", f"{size / 1e6:.1f} MB")
    if manifest.validation:
        v = manifest.validation
        kind = "greedy-token agreement" if manifest.decoder else "top-1 agreement"
        agreement = (f"{kind} {v.top1_agreement:.3f}" if v.top1_agreement is not None
                     else f"min cosine {v.cosine_min:.4f}")
        table.add_row("vs PyTorch", f"max |diff| {v.max_abs_diff:.2e}, {agreement}")
        table.add_row("expected", _EXPECTED[manifest.precision])
        table.add_row("read more", _READ_MORE[bool(manifest.decoder)])
    Console(stderr=stderr).print(table)


main.add_command(bench)  # commands kept in modules of their own
main.add_command(cache)
