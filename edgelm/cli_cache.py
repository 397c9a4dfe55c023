"""`edgelm cache`: list the cache folders edgelm fills, or clear them (edgelm.caches)."""

from __future__ import annotations

import click

from edgelm import caches


@click.group(invoke_without_command=True,
            short_help="List the cache folders edgelm fills, or clear them.")
@click.pass_context
def cache(ctx: click.Context) -> None:
    """List the folders edgelm caches builds in: what each holds, its size, the variable
    that moves it. `edgelm cache clear` empties them."""
    if ctx.invoked_subcommand is None:
        ctx.invoke(cache_list)


@cache.command("list", short_help="List each cache folder, what it holds and its size.")
def cache_list() -> None:
    """List each cache folder, what it holds, the variable that moves it and its size."""
    sizes = {folder.name: caches.disk_usage(folder) for folder in caches.CACHES}
    for folder in caches.CACHES:
        there = folder.path.is_dir()
        click.echo(f"{folder.name:<11} {_megabytes(sizes[folder.name]) if there else '-':>9}  "
                   f"{folder.path}{'' if there else ' (not made yet)'}")
        where = f" (to ${folder.env}/{folder.under_env})" if folder.under_env else ""
        for line in (folder.holds, f"filled by {folder.filled_by}",
                     f"moved by setting {folder.env}{where}"):
            click.echo(click.wrap_text(line, width=96, initial_indent=" " * 4,
                                       subsequent_indent=" " * 6))
    click.echo(f"{'total':<11} {_megabytes(sum(sizes.values())):>9}  "
               "(`edgelm cache clear [NAME]` empties them)")


@cache.command("clear", short_help="Empty cache folders (all, or those named).")
@click.argument("names", nargs=-1, type=click.Choice(caches.NAMES))
@click.option("-y", "--yes", is_flag=True, help="Do not ask before removing.")
def cache_clear(names: tuple[str, ...], yes: bool) -> None:
    """Empty the cache folders NAMES (default: all); what uses them rebuilds what it needs.

    Only the folders `edgelm cache` lists are touched, and never one that holds the home
    or current folder.
    """
    chosen = [caches.cache_folder(n) for n in names] if names else list(caches.CACHES)
    for folder in chosen:
        caches.check_clearable(folder)
    found = [(f, caches.disk_usage(f)) for f in chosen if f.path.is_dir()]
    if not found:
        click.echo("nothing to clear: " + ", ".join(str(f.path) for f in chosen) + " do not exist")
        return
    for folder, size in found:
        click.echo(f"{folder.name:<11} {_megabytes(size):>9}  {folder.path}")
    if not yes:
        click.confirm(f"Empty {'this folder' if len(found) == 1 else 'these folders'}?",
                      abort=True)
    for folder, _ in found:
        click.echo(f"cleared {folder.name}: {_megabytes(caches.clear(folder))} freed")


def _megabytes(size: int) -> str:
    return f"{size / 1e6:.1f} MB"
