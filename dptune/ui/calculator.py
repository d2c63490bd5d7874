"""The accountant calculator in the sidebar: ε by RDP and PLD, and σ for a target ε.

It calls exactly what `dptune epsilon` calls (`dptune.privacy.compute_epsilon` and
`calibrate_noise_multiplier`), so the numbers are the CLI's. It is a fragment: changing
an input reruns only the calculator, not the page.
"""

from __future__ import annotations

import shlex

import streamlit as st

from dptune import privacy
from dptune.errors import DPTuneError
from dptune.privacy.statement import delta_warnings, format_epsilon, format_sigma


@st.cache_data(show_spinner=False, max_entries=256)
def epsilon_report(n: int, batch_size: int, sigma: float, epochs: float, delta: float, microbatched: bool) -> dict:
    return privacy.compute_epsilon(
        n, batch_size, sigma, epochs=epochs, delta=delta, microbatched=microbatched, pld=True
    ).to_dict()


@st.cache_data(show_spinner=False, max_entries=256)
def calibrated_sigma(target: float, n: int, batch_size: int, epochs: float, delta: float, microbatched: bool,
                     accountant: str) -> float:

    return privacy.calibrate_noise_multiplier(
        target, n, batch_size, epochs=epochs, delta=delta, microbatched=microbatched, accountant=accountant
    )


def cli_command(n: int, batch_size: int, sigma: float, epochs: float, delta: float | None,
                microbatches: int | None) -> str:
    """The `dptune epsilon` command that prints the same numbers (delta None: the default)."""
    parts = ["dptune", "epsilon", "--n", str(n), "--batch-size", str(batch_size), "--noise-multiplier", f"{sigma:g}",
             "--epochs", f"{epochs:g}"]
    if delta is not None:
        parts += ["--delta", f"{delta:.6g}"]
    if microbatches is not None and microbatches != batch_size:
        parts += ["--microbatches", str(microbatches)]
    return shlex.join(parts)


def calculator(default_n: int, *, key: str = "calc") -> None:
    """Render the calculator (call inside `with st.sidebar:`)."""
    @st.fragment
    def body() -> None:
        with st.expander("ε calculator (accountant)", expanded=True, icon=":material/calculate:"):
            n = int(st.number_input("N (training examples)", min_value=1, value=int(default_n), step=100,
                                    key=f"{key}-n"))
            left, right = st.columns(2)
            batch = int(left.number_input("batch size B", min_value=1, value=min(256, n), step=16, key=f"{key}-b"))
            epochs = float(right.number_input("epochs", min_value=0.01, value=5.0, step=1.0, key=f"{key}-e"))
            sigma = float(left.number_input("σ (noise multiplier)", min_value=0.0, value=1.1, step=0.1,
                                            format="%.3f", key=f"{key}-s"))
            default_delta = privacy.default_delta(n)
            use_default_delta = right.checkbox("δ = 1/N^1.1", value=True, key=f"{key}-dd")
            delta = default_delta
            if not use_default_delta:
                delta = float(right.number_input("δ", min_value=1e-15, max_value=0.5,
                                                 value=float(f"{default_delta:.3g}"), format="%.2e", step=1e-6,
                                                 key=f"{key}-d"))
            per_example = st.checkbox(
                "per-example clipping (m = B)", value=True, key=f"{key}-pe",
                help="With fewer microbatches m than examples per step, one example can change a microbatch's "
                "clipped gradient by 2C, so the accountant charges σ/2 (TF Privacy's newer statement does too).",
            )
            microbatches = batch
            if not per_example:
                microbatches = int(st.number_input("m (microbatches per step)", min_value=1, max_value=batch,
                                                   value=min(8, batch), key=f"{key}-m"))
            microbatched = microbatches < batch
            try:
                if batch > n:
                    raise DPTuneError(f"batch size B = {batch} is larger than N = {n}; use B ≤ N")
                report = epsilon_report(n, batch, sigma, epochs, delta, microbatched)
            except DPTuneError as error:
                st.error(str(error))
                return
            a, b = st.columns(2)
            a.metric("ε (RDP)", format_epsilon(report["epsilon_rdp"]),
                     help=f"RDP accountant, best order {report['rdp_order']}")
            b.metric("ε (PLD)", format_epsilon(report["epsilon_pld"]), help="PLD accountant (tighter)")
            st.caption(
                f"{report['steps']:,} steps, q = B/N = {report['sampling_rate']:.4g}, σ charged "
                f"{report['charged_noise_multiplier']:.4g}, δ = {report['delta']:.3g}; ε per training run "
                "(example-level, add/remove one example, Poisson sampling)."
            )
            for warning in delta_warnings(report["delta"], n):
                st.warning(warning)
            if microbatched:
                st.caption(f"m = {microbatches} < B: the accountant charges σ/2 = {report['charged_noise_multiplier']:.4g}.")
            st.caption("The same numbers from the command line:")
            st.code(cli_command(n, batch, sigma, epochs, None if use_default_delta else delta, microbatches),
                    language="bash", wrap_lines=True)
            target = float(st.number_input("target ε → σ", min_value=0.01, value=3.0, step=0.5, key=f"{key}-t"))
            try:
                sigma_rdp = calibrated_sigma(target, n, batch, epochs, delta, microbatched, "rdp")
                sigma_pld = calibrated_sigma(target, n, batch, epochs, delta, microbatched, "pld")
            except DPTuneError as error:
                st.warning(str(error))
                return
            c, d = st.columns(2)
            c.metric("σ for ε (RDP)", format_sigma(sigma_rdp), help="Rounded up: never less noise than needed.")
            d.metric("σ for ε (PLD)", format_sigma(sigma_pld), help="Rounded up: never less noise than needed.")

    body()
