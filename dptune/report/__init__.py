"""Reports: figures (data in, plotly figure out) and the export of a trial as run YAML."""
