"""Stage 3, analysis: numbers from a run directory or a run set.

Summaries, blast radius, comparisons, the cost model, validation, run-set loading and ramp
arithmetic. Never imports `archlab.figures`: drawing depends on analysis, not the reverse.
"""
