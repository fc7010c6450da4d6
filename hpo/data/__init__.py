"""Datasets: the synthetic AI Hub twin, conversion/splitting of raw data, YOLO dataset checks.

Public entry points (import the module you need; nothing heavy is imported here):

- :func:`hpo.data.synth.generate`: write a synthetic AI Hub raw set.
- :func:`hpo.data.prepare.prepare`: AI Hub raw data -> stratified YOLO train/valid/mini/full sets.
- :func:`hpo.data.check.check_dataset`: validate any YOLO data yaml (runs before every study).
"""
