"""Specs: frozen, validated descriptions of what to run, and their YAML readers (the bottom layer).

`config` (ModelSpec, DPSGDConfig), `search` (SearchSpec, the search YAML) and its sections
`trial_count`, `ranges`, `pruner`, `recipe`, `modes` (what each search mode asks of the YAML),
`run` (RunConfig, the exported run YAML), `dataset_ref` (which dataset, by fingerprint),
`yaml_fields` (checks).
"""
