"""`onnxserve optimize` and `onnxserve tune`: a faster model file and a better config, measured.

progress.py         a one-line progress bar on stderr
samples.py          the inputs both measure with: the user's samples or generated ones
accuracy.py         how far a variant's outputs are from the original's
optimize.py         variants of a model version, measured against it, written on request
optimize_report.py  the optimize table, as text, markdown and JSON
tune_space.py       candidate configs: one axis at a time from the completed config, then refine
tune.py             measuring candidates on real servers, choosing, writing config.yaml
tune_report.py      the tune tables, the frontier, the plot
commands.py         their command-line options
"""
