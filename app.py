"""dptune dashboard (placeholder until the UI issue lands)."""

import streamlit as st

st.set_page_config(page_title="dptune", layout="wide")
st.title("dptune")
st.write("Tune differentially private SGD. The dashboard is under construction.")
