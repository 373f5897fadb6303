"""Writes the demo's long document: 400 plant inspection reports, one of which answers the demo question.

Usage: python examples/make_demo_document.py OUT_PATH   (deterministic: the same file every time)
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

CITIES = [
    "Lyon",
    "Porto",
    "Gdansk",
    "Bergen",
    "Turin",
    "Ghent",
    "Brno",
    "Aarhus",
    "Graz",
    "Utrecht",
    "Bilbao",
    "Tartu",
    "Plzen",
    "Malmo",
    "Kaunas",
    "Cork",
    "Split",
    "Basel",
    "Linz",
    "Tampere",
]
FIRST = ["Ana", "Jonas", "Lea", "Piotr", "Sofia", "Emil", "Ines", "Tomas", "Mira", "Karl", "Nora", "Luca"]
LAST = ["Berg", "Novak", "Costa", "Lind", "Weber", "Moreau", "Horvat", "Rossi", "Nagy", "Dahl", "Kovac"]
FINDINGS = [
    "valve seals replaced on line {n}",
    "minor corrosion on pipe rack {n}, scheduled for repainting",
    "pressure relief valve {n} tested and recertified",
    "coolant pump {n} vibration within tolerance",
    "fire suppression loop {n} inspected, no faults",
]


def report(rng: random.Random, number: int, city: str, engineer: str, pressure: float) -> str:
    findings = "; ".join(rng.choice(FINDINGS).format(n=rng.randint(1, 40)) for _ in range(3))
    return (
        f"Inspection report #{number:04d}\n"
        f"Site: {city} plant\n"
        f"Date: 2026-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}\n"
        f"Findings: {findings}.\n"
        f"Recorded pressure: {pressure:.2f} bar\n"
        f"Signed off by: {engineer}\n"
    )


def build() -> str:
    rng = random.Random(20261124)
    reports = []
    needle_at = 287
    for number in range(1, 401):
        if number == needle_at:
            reports.append(report(rng, number, "Tarragona", "Marta Ilves", 4.72))
            continue
        engineer = f"{rng.choice(FIRST)} {rng.choice(LAST)}"
        reports.append(report(rng, number, rng.choice(CITIES), engineer, rng.uniform(2.0, 6.0)))
    return "\n".join(reports)


def main() -> None:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "report.txt")
    out.parent.mkdir(parents=True, exist_ok=True)
    text = build()
    out.write_text(text)
    print(f"wrote {out}: {len(text):,} characters (expected answer: Marta Ilves, 4.72 bar)")


if __name__ == "__main__":
    main()
