"""dptune dashboard: `streamlit run app.py`.

The entry point is a router (Streamlit's st.navigation): it sets up the page, draws the
sidebar every page shares (workspace, current study, the ε calculator) and runs the page
chosen from `pages/`. No training happens in this process; trials run in worker
processes started from the Search page, and every page reads the Optuna study.
"""

import streamlit as st

from dptune.ui import shell

st.set_page_config(page_title="dptune — tune DP-SGD", page_icon=":material/shield_lock:", layout="wide")
page = st.navigation(shell.pages())
shell.sidebar()
page.run()
