"""Experiments: one module per claim of the content brief, each returning measured numbers.

Notebooks call these and print or plot the results; prose never hard-codes a figure.
"""
