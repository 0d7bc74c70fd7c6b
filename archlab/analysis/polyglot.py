"""The recommendation engine in Python and in Rust, side by side: the runs' tags and measures.

`archlab reproduce` runs the process family (`PLACEMENT`) twice per scenario of `SCENARIOS`,
once per engine of `ENGINES`, back to back (python, rust, python, rust, ...), so the two runs
of a pair share the machine's state as closely as a shared machine allows. Only the
recommendations group's engine differs (the `engine_recommendations` knob); figure and
notebook 08 read the pairs (`archlab.figures.polyglot`). The model rebuild times come from
`archlab bench engine` (`engine.json` in the run set), which builds each engine's model from
the same store at each size.
"""

from __future__ import annotations

KIND = "polyglot"  # the manifest kind of every run of the comparison
PLACEMENT = "multiprocess"
ENGINES = ("python", "rust")
KNOB = "engine_recommendations"
ENGINE_ROLE = "recommendations"
RAMP = "ramp"
PROFILE = "profile"  # an open-loop run at the scale's profile rate, sampled by py-spy
SCENARIOS = (RAMP, "gc-pressure", "cpu-hog", PROFILE)


def tag(scenario: str, engine: str) -> str:
    """The run's tag (and folder) in a run set: `polyglot-<scenario>-<engine>`."""
    return f"{KIND}-{scenario}-{engine}"
