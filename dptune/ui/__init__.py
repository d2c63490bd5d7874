"""The Streamlit dashboard's helpers.

This sub-package is the only place in `dptune` that imports streamlit, and only its
`widgets`/`views` modules do; `workspace`, `workers`, `adapters` and `synthetic` are
plain Python so tests and benchmarks can use them without a Streamlit runtime.
"""
