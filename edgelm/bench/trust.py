"""How far a bench's speed figures can be trusted: spread between bursts, paired ratios.

Noise from other tenants of a machine only ever adds time, and it comes and goes
within seconds. So a variant's burst medians are compared with the PyTorch burst
measured next to them (the median of those paired ratios is the speed-up), and a
point whose bursts disagree by more than SPREAD_LIMIT, or that has fewer than
MIN_ROUNDS bursts, gets its speed-up marked as uncertain with a note saying why.
"""

from __future__ import annotations

import statistics

from edgelm.bench.spec import Point, VariantResult

SPREAD_LIMIT = 0.15  # (slowest - fastest burst median) / median burst median
MIN_ROUNDS = 3  # fewer bursts than this cannot show a spread worth the name
BASELINE = "PyTorch"


def spread(burst_ms: list[float]) -> float:
    """Relative range of the burst medians: 0 when every burst agrees."""
    return (max(burst_ms) - min(burst_ms)) / statistics.median(burst_ms)


def paired_speedup(base_ms: list[float], ms: list[float]) -> float:
    """Median over rounds of base/variant burst medians, each pair measured seconds apart."""
    return statistics.median(b / m for b, m in zip(base_ms, ms))


def compare(variants: list[VariantResult]) -> None:
    """Set each point's spread, speed-up against the baseline, and whether it settled."""
    base = next((v for v in variants if v.name == BASELINE), None)
    base_points = {(p.batch, p.seq_len): p for p in base.points} if base else {}
    for v in variants:
        for p in v.points:
            p.spread = round(spread(p.burst_ms), 4)
            p.settled = p.spread <= SPREAD_LIMIT and p.bursts >= MIN_ROUNDS
            other = base_points.get((p.batch, p.seq_len))
            if other is not None and other.burst_ms and p.burst_ms:
                p.speedup = round(paired_speedup(other.burst_ms, p.burst_ms), 4)


def uncertain(point: Point, base: Point | None) -> bool:
    """A speed-up resting on a point (or a baseline point) that did not settle."""
    return not point.settled or (base is not None and not base.settled)


def trust_notes(variants: list[VariantResult], rounds: int) -> list[str]:
    """What the table's '?' marks mean, one line per cause."""
    notes = []
    if rounds < MIN_ROUNDS:
        notes.append(f"only {rounds} round(s): speed-ups are marked '?'; pass --rounds "
                     f"{MIN_ROUNDS} or more to see how much they vary")
    noisy = [f"{v.name} b{p.batch}x{p.seq_len} {p.spread:.0%}" for v in variants
             for p in v.points if p.spread is not None and p.spread > SPREAD_LIMIT]
    if noisy:
        notes.append(f"bursts disagreed by more than {SPREAD_LIMIT:.0%} ({', '.join(noisy)}): "
                     "the machine was busy; speed-ups marked '?' may be off; measure again "
                     "on a quieter machine or with more --rounds")
    return notes
