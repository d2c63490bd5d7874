"""Clip norm: the per-example gradient-norm profile and C at a quantile, with its privacy cost."""

import streamlit as st

from dptune.privacy.statement import format_epsilon
from dptune.report import plots
from dptune.ui import clip_view, core, shell, specs

shell.frame("Clip norm")
st.title("Clip norm C")
st.caption(
    "DP-SGD clips each example's gradient to L2 norm C. Too small a C throws away signal; too large a C means "
    "more noise per useful gradient (the noise is σ·C). TF Privacy's guide: set C near a quantile (50–90%) of the "
    "per-example gradient norms. Looking at the exact norms would leak the training data, so the histogram below "
    "is released privately (Laplace noise, pure ε_C-DP) and C is read off it."
)

with core.guard("Clip norm"):
    state = core.load_state()
    data = core.loaded_data(state)
    model = core.current_model_spec(state, data)
    clip = state["clip"]
    methods = {"private": "Private quantile of the training data", "manual": "Type C yourself (no data used)"}
    method = st.radio("How to choose C", list(methods), format_func=methods.get, horizontal=True,
                      index=list(methods).index(clip.get("method", "private")), key="clip-method")
    if method != clip.get("method"):
        changes = {"method": method}
        if method == "manual":  # a C read off the private histogram is not a C typed in
            changes.update(l2_norm_clip=1.0, selection=None)
        clip = core.update_state("clip", **changes)["clip"]

    if method == "private":
        left, mid = st.columns(2)
        quantiles = list(clip_view.QUANTILES)
        quantile = left.radio("Quantile", quantiles, format_func=lambda q: f"{q:.0%}", horizontal=True,
                              index=quantiles.index(clip.get("quantile", 0.75)) if clip.get("quantile") in quantiles
                              else 1, key="clip-quantile")
        epsilon_c = float(mid.number_input("ε_C for the histogram", min_value=0.01, max_value=2.0,
                                           value=float(clip.get("clip_epsilon") or 0.1), step=0.05,
                                           key="clip-epsilon",
                                           help="Pure ε-DP (δ = 0) of the noisy histogram; added to every trial's ε."))
        selection = clip.get("selection")
        if epsilon_c != clip.get("clip_epsilon") or quantile != clip.get("quantile"):
            changes = {"clip_epsilon": epsilon_c, "quantile": quantile}
            if selection:  # reading another quantile off the released histogram is free (post-processing)
                changes["l2_norm_clip"] = float(selection["quantiles"][str(quantile)])
            clip = core.update_state("clip", **changes)["clip"]
        if st.button("Release the noisy histogram" + (" again" if selection else ""), type="primary",
                     icon=":material/bar_chart:", key="clip-release",
                     help=f"Profiles all {data.dataset.n_train:,} training rows with the initial model and "
                     f"releases their histogram with ε_C = {epsilon_c:g}. Each release spends ε_C again on this "
                     "dataset."):
            clip = clip_view.release(data, model, quantile=quantile, epsilon=epsilon_c)
            selection = clip["selection"]
        if selection:
            st.plotly_chart(
                plots.clip_histogram_figure(selection["counts"], selection["bin_edges"],
                                            quantiles=selection["quantiles"], clip_norm=clip.get("l2_norm_clip")),
                key="clip-histogram",
            )
            cols = st.columns(4)
            for col, q in zip(cols, clip_view.QUANTILES):
                col.metric(f"{q:.0%} quantile", f"{selection['quantiles'][str(q)]:.3g}")
            cols[3].metric("chosen C", f"{clip['l2_norm_clip']:.3g}")
            st.caption(
                f"Released from all {selection['examples']:,} training rows, gradients of the initial {model.kind} "
                f"model, with ε_C = {selection['epsilon']:g}."
            )
        else:
            st.info("Press **Release the noisy histogram** to profile the gradient norms and choose C.",
                    icon=":material/info:")
    else:
        value = float(st.number_input("C (L2 clip norm)", min_value=1e-4, max_value=1e4,
                                      value=float(clip.get("l2_norm_clip") or 1.0), format="%.4g", key="clip-manual"))
        if value != clip.get("l2_norm_clip") or clip.get("selection"):
            clip = core.update_state("clip", l2_norm_clip=value, selection=None)["clip"]
        st.caption("A C you choose without looking at the training data costs no privacy (TF Privacy: 1.0 often "
                   "works for small models); histograms already released on this dataset stay spent.")

    spent = specs.spent_on(clip, data.dataset.fingerprint)
    if spent["releases"]:
        st.markdown(
            f"**Spent on this dataset:** {spent['releases']} histogram release(s), ε_C = {spent['epsilon']:g} in "
            "total (pure DP). It stays in every total of every search on this dataset, whichever C you use now: "
            "a histogram once seen cannot be unseen."
        )

    if clip.get("l2_norm_clip"):
        uses = {"range": "Search C around it (C/4 … 4C)", "fix": "Use exactly this C in every trial"}
        use = st.radio("In the search", list(uses), format_func=uses.get, horizontal=True,
                       index=list(uses).index(clip.get("use", "range")), key="clip-use")
        if use != clip.get("use"):
            clip = core.update_state("clip", use=use)["clip"]
        cost = clip_view.cost_example(state, data, clip)
        if cost is not None:
            st.markdown(
                f"**Privacy cost of this C.** A trial calibrated to ε = {cost['target']:g} "
                f"(B = {cost['batch_size']}, {cost['epochs']:g} epochs, δ = {cost['delta']:.2g}) costs "
                f"**ε = {format_epsilon(cost['with_clip'])}** once the clip-norm releases on this dataset "
                f"(ε_C = {cost['clip_epsilon']:g}) are composed with it (RDP accountant)."
                if cost["clip_epsilon"] > 0
                else "**Privacy cost of this C: none** (no training data was used to choose it)."
            )
