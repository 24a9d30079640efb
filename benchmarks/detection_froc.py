"""FROC of the built-in nodule finder on synthetic CTs; writes the table into docs/detection.md.

    .venv/bin/python benchmarks/detection_froc.py [--quick] [--no-doc] [--train]

Scans (benchmarks/detection_scans.py): the demo's CTs with its truth file (3 patients,
8 studies of 120x512x512 at 0.7 x 0.7 x 1.25 mm), and LIDC-shaped scans (the first study
of 8 demo patients of another seed, with LIDC-IDRI outlines, 4 and 30 mm spheres, ground
glass, vessel trees and 20 HU noise). ``--train`` instead fits the score's logistic
weights on the *training* LIDC-shaped scans (other patients, other outlines) and prints
them for `cloudfilm.domain.detection.SCORE_WEIGHTS`. ``--quick`` uses fewer, smaller scans
and only prints. Runtime of a full run: about 10 minutes on one core.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.detection_scans import (
    FP_RATES,
    Froc,
    Outcome,
    Scan,
    demo_scans,
    froc,
    judge,
    lidc_scans,
)
from cloudfilm.domain import detection
from cloudfilm.services.demo.generate import DemoOptions

DOC = Path(__file__).resolve().parent.parent / "docs" / "detection.md"
START, END = "<!-- detection-froc:start -->", "<!-- detection-froc:end -->"
VALIDATION_SEED, TRAINING_SEED = 11, 8
L2_PENALTY = 0.1   # ridge on the weights (not the bias): few false positives to learn from


class Run:
    """Every scan's judged candidates, and the detector's time per scan."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.judged: list[tuple[Scan, list[Outcome]]] = []
        self.seconds: list[float] = []
        self.cpu_seconds: list[float] = []

    def add(self, scans: Iterator[Scan]) -> None:
        for scan in scans:
            wall, cpu = time.perf_counter(), time.process_time()
            found = detection.find_nodules(scan.volume)
            self.seconds.append(time.perf_counter() - wall)
            self.cpu_seconds.append(time.process_time() - cpu)
            outcomes = judge(scan, [(c.segmentation.centre_patient_mm, c.score) for c in found])
            self.judged.append((scan, outcomes))
            hits = sum(o.hit is not None for o in outcomes)
            print(f"{self.name}: {scan.name}: {hits}/{sum(n.target for n in scan.nodules)} "
                  f"targets, {sum(o.false_positive for o in outcomes)} FP, "
                  f"{self.seconds[-1]:.1f} s", flush=True)

    @property
    def froc(self) -> Froc:
        return froc(self.judged)


def found_by_kind(runs: Sequence[Run]) -> dict[str, tuple[int, int]]:
    """(found at any score, present) for solid targets by size, and for ground glass."""
    groups = {"solid 4-6 mm": (4.0, 6.0), "solid 6-10 mm": (6.0, 10.0),
              "solid 10-20 mm": (10.0, 20.0), "solid 20-30 mm": (20.0, 30.01)}
    table: dict[str, tuple[int, int]] = {}
    for label, (low, high) in groups.items():
        present = found = 0
        for run in runs:
            for scan, outcomes in run.judged:
                hit = {o.hit for o in outcomes}
                for n, truth in enumerate(scan.nodules):
                    if truth.target and low <= truth.diameter_mm < high:
                        present += 1
                        found += n in hit
        table[label] = (found, present)
    glass = reported = 0
    for run in runs:
        for scan, outcomes in run.judged:
            for truth in scan.nodules:
                if truth.kind == "ground-glass":
                    glass += 1
                    reported += any(math.dist(o.centre_mm, truth.centre_mm) <= truth.hit_radius_mm
                                    for o in outcomes)
    table["ground glass (not a target)"] = (reported, glass)
    return table


def markdown(runs: Sequence[Run], combined: Froc) -> str:
    rates = " | ".join(f"{r:g}" for r in FP_RATES)
    lines = ["Sensitivity for solid nodules of 4-30 mm at a given number of false positives",
             "per scan (the best operating point of the score threshold; pooled over scans).",
             "", f"| scans | n scans | targets | {rates} |",
             "|---|---|---|" + "---|" * len(FP_RATES)]
    for name, result in [(r.name, r.froc) for r in runs] + [("all", combined)]:
        cells = " | ".join(f"{s:.2f}" for _, s in result.points)
        lines.append(f"| {name} | {result.scans} | {result.targets} | {cells} |")
    lines += ["", "| nodules | found (any score) |", "|---|---|"]
    for label, (found, present) in found_by_kind(runs).items():
        lines.append(f"| {label} | {found}/{present} |")
    seconds = [s for r in runs for s in r.seconds]
    cpu = [s for r in runs for s in r.cpu_seconds]
    lines += ["", f"Detector time per scan (one process, one thread): median "
              f"{statistics.median(cpu):.1f} s CPU ({statistics.median(seconds):.1f} s wall), "
              f"largest {max(cpu):.1f} s CPU. Whole-scan false positives: "
              f"{sum(o.false_positive for r in runs for _, f in r.judged for o in f)} in "
              f"{sum(len(r.judged) for r in runs)} scans at any score."]
    return "\n".join(lines)


def write_doc(table: str) -> None:
    text = DOC.read_text()
    head, _, rest = text.partition(START)
    _, _, tail = rest.partition(END)
    DOC.write_text(f"{head}{START}\n{table}\n{END}{tail}")


def train(scans: Iterator[Scan]) -> dict[str, float]:
    """L2-regularised logistic regression (Newton) of hit vs false positive on the terms."""
    rows: list[list[float]] = []
    labels: list[float] = []
    for scan in scans:
        found = detection.find_nodules(scan.volume)
        ordered = sorted(found, key=lambda c: -c.score)
        outcomes = judge(scan, [(c.segmentation.centre_patient_mm, c.score) for c in ordered])
        for candidate, outcome in zip(ordered, outcomes, strict=True):
            if outcome.hit is None and not outcome.false_positive:
                continue
            terms = detection.score_terms(candidate.features, candidate.elongation)
            rows.append([1.0, *(terms[name] for name in detection.SCORE_WEIGHTS)])
            labels.append(1.0 if outcome.hit is not None else 0.0)
        print(f"training: {scan.name}: {len(rows)} candidates so far", flush=True)
    x, y = np.asarray(rows), np.asarray(labels)
    w = np.zeros(x.shape[1])
    penalty = np.eye(x.shape[1]) * L2_PENALTY
    penalty[0, 0] = 0.0
    for _ in range(50):
        p = 1 / (1 + np.exp(-x @ w))
        gradient = x.T @ (p - y) + penalty @ w
        hessian = x.T @ (x * (p * (1 - p))[:, None]) + penalty
        w -= np.linalg.solve(hessian, gradient)
    names = ["bias", *detection.SCORE_WEIGHTS]
    print(f"{int(y.sum())} hits, {int(len(y) - y.sum())} false positives")
    return {name: round(float(v), 2) for name, v in zip(names, w, strict=True)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer, smaller scans; print only")
    parser.add_argument("--no-doc", action="store_true", help="do not rewrite docs/detection.md")
    parser.add_argument("--train", action="store_true", help="fit and print the score weights")
    args = parser.parse_args()
    if args.train:
        options = DemoOptions(patients=6, seed=TRAINING_SEED)
        print(train(lidc_scans(options, seed=TRAINING_SEED, part=1)))
        return 0
    demo_options = DemoOptions(patients=1 if args.quick else 3)
    lidc_options = DemoOptions(patients=2 if args.quick else 8, seed=VALIDATION_SEED)
    demo, lidc = Run("demo (truth file)"), Run("LIDC-shaped")
    demo.add(demo_scans(demo_options))
    lidc.add(lidc_scans(lidc_options, seed=VALIDATION_SEED, part=0))
    combined = froc(demo.judged + lidc.judged)
    table = markdown([demo, lidc], combined)
    print(table)
    if not (args.quick or args.no_doc):
        write_doc(table)
    return 0 if math.isfinite(combined.sensitivity_at(2.0)) else 1


if __name__ == "__main__":
    raise SystemExit(main())
