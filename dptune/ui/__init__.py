"""The Streamlit dashboard's helpers (app.py and pages/ are thin layers over these).

This sub-package is the only place in `dptune` that imports streamlit. Plain Python (no
streamlit, usable from tests and benchmarks): `workspace` (paths, saved page choices,
uploads), `workers` (worker processes recorded in the workspace), `specs` (page choices ->
SearchSpec), `adapters`. Test helpers (AppTest, synthetic studies) live in tests/.
Streamlit: `shell` (page frame, sidebar), `core` (cached workspace, data, storage, study
snapshots, errors), `calculator`, `live`, `searching`, `datasets`, `models_view`,
`clip_view`, `trial_view`, `exporting`.
"""
