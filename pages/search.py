"""Search: mode, target ε and δ, ranges, workers; start and stop; the study live."""

import os

import streamlit as st
import yaml

from dptune import privacy
from dptune.study.budget import check_budget, privacy_notes
from dptune.study.modes import NoisePolicy, mode_for, study_mode
from dptune.ui import core, live, searching, shell, specs
from dptune.ui.workers import dead_workers, exit_summary, list_workers, restart_dead_workers

shell.frame("Search")
st.title("Search")
st.caption(
    "Each trial trains the model once with DP-SGD in a worker process (never in this app), records its accuracy "
    "and ε after every epoch in the study, and the next trial's hyperparameters are chosen by Optuna. Closing this "
    "tab or restarting the app stops nothing: the page re-attaches to the study and its workers."
)

with core.guard("Search settings"):
    state = core.load_state()
    data = core.loaded_data(state)
    model = core.current_model_spec(state, data)
    n_train = data.dataset.n_train
    saved = state["search"]
    new = dict(saved)

    modes = list(specs.MODES)
    new["mode"] = st.radio("Mode", modes, index=modes.index(saved["mode"]) if saved["mode"] in modes else 0,
                           format_func=str.capitalize, horizontal=True, key="search-mode")
    st.caption(specs.MODES[new["mode"]])
    mode = mode_for(new["mode"])
    cols = st.columns(4)
    new["target_epsilon"] = float(cols[0].number_input("target ε", min_value=0.01, max_value=1000.0,
                                                       value=float(saved["target_epsilon"]), step=0.5,
                                                       key="search-epsilon"))
    default_delta = privacy.default_delta(n_train)
    custom_delta = cols[1].toggle("set δ", value=saved.get("delta") is not None, key="search-custom-delta",
                                  help=f"Default δ = 1/N^1.1 = {default_delta:.2g} for N = {n_train:,}")
    if custom_delta:
        new["delta"] = float(cols[1].number_input("δ", min_value=1e-15, max_value=0.5,
                                                  value=float(saved.get("delta") or f"{default_delta:.2g}"),
                                                  format="%.2e", key="search-delta"))
    else:
        new["delta"] = None
        cols[1].caption(f"δ = {default_delta:.2g} (1/N^1.1)")
    new["n_trials"] = int(cols[2].number_input("trials", min_value=1, max_value=10000, value=int(saved["n_trials"]),
                                               key="search-trials"))
    if mode.phased:  # the recipe's phases depend on each other: one driver process runs them all
        cols[3].markdown("worker processes: **1** (the recipe's driver)")
    else:
        new["workers"] = int(cols[3].number_input(
            "worker processes", min_value=1, max_value=max(1, os.cpu_count() or 1),
            value=min(int(saved["workers"]), max(1, os.cpu_count() or 1)), key="search-workers",
            help="Trials run in parallel, one per worker; on one GPU they share it."))

    st.markdown("**Ranges** (sampled on a log scale; equal ends fix the value)")
    cols = st.columns(4)

    def pair(column, label, key, values, *, integer=False, fmt=None):
        low = column.number_input(f"{label} from", value=values[0] if not integer else int(values[0]),
                                  min_value=1 if integer else 1e-6, key=f"{key}-low", format=fmt)
        high = column.number_input(f"{label} to", value=values[1] if not integer else int(values[1]),
                                   min_value=1 if integer else 1e-6, key=f"{key}-high", format=fmt)
        return [int(low), int(high)] if integer else [float(low), float(high)]

    new["learning_rate"] = pair(cols[0], "learning rate", "search-lr", saved["learning_rate"], fmt="%.4g")
    new["batch_size"] = pair(cols[1], "batch size B", "search-batch", saved["batch_size"], integer=True)
    new["epochs"] = pair(cols[2], "epochs", "search-epochs", saved["epochs"], integer=True)
    if mode.chooses_clip_norm:  # the recipe sets C itself (shown in its plan below)
        cols[3].markdown("C: set by the recipe (see its plan below)")
        cols[3].page_link("pages/clip_norm.py", label="change C", icon=":material/content_cut:")
    elif state["clip"].get("l2_norm_clip"):
        c_range = specs.clip_range(state)
        cols[3].markdown(f"C from the Clip norm page: **{c_range[0]:.3g} … {c_range[1]:.3g}**")
        cols[3].page_link("pages/clip_norm.py", label="change C", icon=":material/content_cut:")
    else:
        new["l2_norm_clip"] = pair(cols[3], "clip norm C", "search-clip", saved["l2_norm_clip"], fmt="%.4g")
    cols = st.columns([2, 1])
    choices = list(specs.MICROBATCH_CHOICES)
    new["num_microbatches"] = cols[0].multiselect(
        "microbatches m (per_example: m = B)", choices,
        default=[c for c in saved["num_microbatches"] if c in choices], key="search-microbatches",
        help="m < B is faster but the accountant charges σ/2 (one example can move a microbatch by 2C).",
        disabled=mode.noise_policy is NoisePolicy.RECIPE,  # m = 1, then scaled with σ
    )
    if mode.noise_policy is NoisePolicy.SEARCHED:
        new["noise_multiplier"] = pair(cols[1], "σ", "search-sigma", saved["noise_multiplier"], fmt="%.4g")
    elif mode.noise_policy is NoisePolicy.RECIPE:
        new["recipe_noise_multiplier"] = pair(cols[1], "σ at m = 1", "search-sigma-m1",
                                              saved["recipe_noise_multiplier"], fmt="%.4g")
        cols[0].caption("The recipe runs at the largest batch size and epochs of the ranges; m = 1 while it "
                        "searches σ, then σ and m are scaled together until ε meets the target. C comes from the "
                        "Clip norm page's quantile and ε_C (released again by the recipe) or the C you typed.")
    else:
        cols[1].caption("σ is calibrated per trial so that its ε equals the target (budgeted mode).")

    with st.expander("Advanced"):
        cols = st.columns(3)
        samplers = ["tpe", "random", "gp", "nsga2"]
        new["sampler"] = cols[0].selectbox("sampler", samplers, index=samplers.index(saved.get("sampler", "tpe"))
                                           if saved.get("sampler") in samplers else 0, key="search-sampler")
        pruners = ["median", "percentile", "successive_halving", "hyperband", "none"]
        new["pruner"] = cols[1].selectbox("pruner (budgeted mode)", pruners,
                                          index=pruners.index(saved.get("pruner", "median"))
                                          if saved.get("pruner") in pruners else 0, key="search-pruner")
        new["seed"] = int(cols[2].number_input(
            "initial-weights seed", min_value=0, value=int(saved.get("seed") or 0), key="search-seed",
            help="Fixes the (public) initial weights of every trial. The noise and the batches never come from it: "
                 "every trial draws them from the operating system's secret generator."))
        optimizers = list(specs.OPTIMIZER_LABELS)
        new["optimizer"] = cols[0].selectbox(
            "optimizer", optimizers, format_func=specs.OPTIMIZER_LABELS.get, key="search-optimizer",
            index=optimizers.index(saved.get("optimizer", "sgd")) if saved.get("optimizer") in optimizers else 0)
        new["momentum"] = float(cols[1].number_input(
            "momentum", min_value=0.0, max_value=0.99, step=0.05, value=float(saved.get("momentum", 0.9)),
            key="search-momentum", disabled=new["optimizer"] != "momentum"))
    if new != saved:
        state = core.update_state("search", **new)

    ws = core.workspace()
    name = specs.default_study_name(data.dataset.name, new["mode"], new["target_epsilon"])
    spec = specs.search_spec_from_state(state, dataset_ref=data.ref, model_spec=model, workspace=str(ws.root),
                                        storage=ws.storage_url, study_name=name)
    errors, warnings = check_budget(spec, n_train)  # δ and whether any trial can meet ε (as `dptune tune`)
    for message in errors:
        st.error(message, icon=":material/block:")
    for message in warnings:
        st.warning(message, icon=":material/warning:")
    notes = privacy_notes(spec, n_train)  # what will not be private, or costs more (as `dptune tune`)
    if notes:
        st.info("**Before you start**\n\n" + "\n".join(f"- {note}" for note in notes), icon=":material/shield:")
    with st.expander("The same search from the command line"):
        st.code(yaml.safe_dump({k: v for k, v in spec.to_dict().items() if v is not None}, sort_keys=False),
                language="yaml")
        st.code("dptune tune --config search.yaml", language="bash")
    if mode.phased:
        plan = searching.recipe_plan(spec)
        st.markdown(f"**What the recipe will run**: {plan['runs']} training runs in {plan['processes']} driver "
                    "process (one phase after the other)")
        st.dataframe(
            [{"phase": title, "training runs": runs, "what": text} for title, runs, text in plan["phases"]],
            hide_index=True, key="search-recipe-plan",
            column_config={"what": st.column_config.TextColumn(width="large")},
        )
        summary = (f"{plan['runs']} run(s) ({spec.recipe.baseline_trials} baseline + {spec.n_trials.n} noise search "
                   f"+ {spec.recipe.verify_trials} verify) on {data.dataset.name} (N = {n_train:,}) with the "
                   f"{model.kind} model, {plan['processes']} driver process.")
    else:
        summary = (f"{spec.n_trials.to_dict()} trial(s) on {data.dataset.name} (N = {n_train:,}) with the "
                   f"{model.kind} model, {new['workers']} worker process(es).")
    # a study started here that still runs: a second Start would make a second study with its own workers
    busy = searching.running_state(core.load_state().get("study"))
    confirmed = False
    if busy:
        st.warning(
            f"Study **{busy['name']}** is still running ({busy['running']} running, {busy['waiting']} queued, "
            f"{busy['workers']} worker process(es) started here): Start would begin a second study with its own "
            "workers. Stop its workers first, or confirm.", icon=":material/hourglass_top:")
        cols = st.columns([1, 3])
        if cols[0].button("Stop workers", icon=":material/stop:", key="search-start-stop",
                          disabled=not busy["workers"]):
            stopped = searching.stop(busy["name"])
            st.toast(f"Stopped {stopped} worker(s); queued trials stay queued.", icon=":material/stop_circle:")
            st.rerun()
        confirmed = cols[1].checkbox("start another search anyway", value=False, key="search-start-anyway")
    left, right = st.columns([1, 3])
    if left.button("Start search", type="primary", icon=":material/play_arrow:",
                   disabled=bool(errors) or (bool(busy) and not confirmed), key="search-start"):
        started = searching.start_search(spec, data.dataset, n_workers=new.get("workers", 1), clip=state["clip"])
        st.session_state.pop("search-start-anyway", None)
        st.session_state["search-started"] = started
        st.rerun()  # draw the page again from the new study: Start is then disabled while it runs
    if "search-started" in st.session_state:
        st.toast(f"Started study {st.session_state.pop('search-started')}", icon=":material/rocket_launch:")
    right.caption(summary)

st.divider()
with core.guard("Studies"):
    names = core.study_names()
    if not names:
        st.info("No study yet. Press **Start search** above (or the one-click search on the Start page).",
                icon=":material/info:")
        st.stop()
    saved_study = core.load_state().get("study")
    current = saved_study if saved_study in names else names[0]
    # The saved current study is the source of truth: when it changed since this session last
    # showed it (Start above, the Start page, another tab), the selectbox follows it instead of
    # writing its own old value back over it.
    if st.session_state.get("search-study-shown") != current or st.session_state.get("search-study") not in names:
        st.session_state["search-study"] = current
    study_name = st.selectbox("Study", names, key="search-study")
    if study_name != saved_study:
        core.update_state("study", name=study_name)
    st.session_state["search-study-shown"] = study_name
    status = searching.study_status(study_name)
    record = status["record"]
    st.caption(
        f"mode **{record.mode}** · target ε **{record.target_epsilon}** · δ {record.delta or 0:.2g} · "
        f"data {record.dataset.name} (N = {record.n_train}) · created {record.created_at or '?'}"
    )
    cols = st.columns([1, 1, 3])
    if cols[0].button("Stop workers", icon=":material/stop:", key="search-stop", disabled=not status["workers"]):
        stopped = searching.stop(study_name)
        st.toast(f"Stopped {stopped} worker(s); queued trials stay queued.", icon=":material/stop_circle:")
        st.rerun()
    if cols[1].button("Start workers", icon=":material/play_arrow:", key="search-resume",
                      disabled=bool(status["workers"]) or not (status["counts"].get("WAITING")
                                                                or study_mode(record).phased)):
        count = searching.resume(study_name, n_workers=int(state["search"]["workers"]))
        st.toast(f"Started {count} worker(s)", icon=":material/play_circle:")
        st.rerun()
    cols[2].caption("Stopping kills the worker processes; a trial they were running is marked failed and re-queued "
                    "by the next worker after the heartbeat grace period. More workers can join from other machines: "
                    f"`dptune worker --study {study_name} --storage {ws.storage_url}`")
    unfinished = status["counts"].get("WAITING", 0) + status["counts"].get("RUNNING", 0)
    dead = dead_workers(ws, study_name) if unfinished else []
    if dead:
        st.warning(
            f"{len(dead)} worker process(es) started here exited while {unfinished} trial(s) are unfinished: "
            + "; ".join(f"PID {w.pid}: {exit_summary(w)}" for w in dead[:4])
            + f". Restart them here, or run `dptune worker --study {study_name} --storage {ws.storage_url}` "
            "on any machine. A trial they were running is re-queued after the heartbeat grace period.",
            icon=":material/warning:",
        )
        if st.button("Restart dead workers", icon=":material/restart_alt:", key="search-restart-dead"):
            restarted = restart_dead_workers(ws, study_name)
            core.clear_caches()
            st.toast(f"Restarted {len(restarted)} worker(s)", icon=":material/play_circle:")
            st.rerun()
    live.live_monitor(study_name, key="search-live")
    records = list_workers(ws, study_name)
    if records:
        with st.expander(f"Worker processes started here ({len(records)})"):
            for record in records[:8]:
                st.markdown(f"PID {record.pid} — {'running' if record.alive else 'exited'} — log `{record.log}`")
                st.code(record.log_tail(12) or "(empty log)", language="text")
