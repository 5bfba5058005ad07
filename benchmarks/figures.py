"""What every benchmark reports: a summary of samples, printed and saved as JSON."""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def summary(samples: list[float], scale: float = 1.0, digits: int = 4) -> dict[str, float]:
    """n, median, p95, p99, min and max of `samples` (each multiplied by `scale`)."""
    ordered = sorted(sample * scale for sample in samples)

    def pick(quantile: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(quantile * len(ordered)))], digits)

    return {
        "n": len(ordered),
        "median": round(statistics.median(ordered), digits),
        "p95": pick(0.95),
        "p99": pick(0.99),
        "min": round(ordered[0], digits),
        "max": round(ordered[-1], digits),
    }


def save(name: str, figures: dict[str, Any]) -> None:
    """Print the figures and write them to benchmarks/results/NAME.json."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(figures, indent=2) + "\n")
    print(json.dumps(figures, indent=2))
    print(f"saved benchmarks/results/{path.name}")
