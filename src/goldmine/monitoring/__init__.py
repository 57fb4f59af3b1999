"""Monitoring a served model (issue 16, part 3): what it is asked and what it answers, per model version, over
rolling windows, and whether its inputs have drifted away from its training data.

    reference.py   what the training data looked like (written by `goldmine train` into the run directory)
    statistics.py  the tests: MMD between embedding samples with a permutation test, Kolmogorov-Smirnov on text
                   lengths, out-of-vocabulary rate, Jensen-Shannon divergence of label shares
    windows.py     a rolling window's counters and the `DriftMonitor` the predict route feeds
    report.py      `goldmine drift report`: each window's figures over time, as PNG and HTML

Raw texts are never stored: a window keeps counters, word-count lengths and a small reservoir sample of texts in
memory until it closes; then the sample is embedded, the tests are run, the window's figures (numbers only) are
written to the serving database and exported as Prometheus metrics, and the sample is dropped.
"""
