"""How long the accountant takes for the runs users ask about (no assertions: ratios and medians).

    python benchmarks/bench_accountant.py [--repeats 5]

Prints the median seconds of RDP alone, RDP + PLD, and calibration (σ for a target ε) for
TF Privacy's MNIST settings (N = 60000, B = 256, σ = 1.1, 60 epochs = 14063 steps) and a
digits-sized run, measured interleaved in one process, with the machine's load average.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

from dptune import privacy

CASES = {
    "mnist 60 epochs (14063 steps)": (60000, 256, 1.1, 60.0),
    "digits 5 epochs": (1423, 64, 1.0, 5.0),
}


def _seconds(function) -> float:
    started = time.perf_counter()
    function()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    privacy.compute_epsilon(1000, 10, 1.0, steps=10, delta=1e-5)  # imports
    print(f"load average {os.getloadavg()[0]:.2f}; medians of {args.repeats} interleaved repeats")
    for name, (n, batch, sigma, epochs) in CASES.items():
        delta = privacy.default_delta(n)
        timings: dict[str, list[float]] = {"rdp": [], "rdp + pld": [], "calibration (rdp)": []}
        for _ in range(args.repeats):
            timings["rdp"].append(_seconds(lambda: privacy.compute_epsilon(
                n, batch, sigma, epochs=epochs, delta=delta, pld=False)))
            timings["rdp + pld"].append(_seconds(lambda: privacy.compute_epsilon(
                n, batch, sigma, epochs=epochs, delta=delta)))
            timings["calibration (rdp)"].append(_seconds(lambda: privacy.calibrate_noise_multiplier(
                3.0, n, batch, epochs=epochs, delta=delta)))
        medians = {key: statistics.median(values) for key, values in timings.items()}
        print(f"{name}: " + ", ".join(f"{key} {value:.3f} s" for key, value in medians.items())
              + f"; pld / rdp = {medians['rdp + pld'] / medians['rdp']:.1f}x")


if __name__ == "__main__":
    main()
