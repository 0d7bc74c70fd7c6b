"""The README's gallery: each reference figure with one caption whose numbers come from the run
set's `readings.json`, so the README cannot quote a number the reference does not hold.

The prose is `gallery.md` beside this module. In it `{{name}}` quotes a reading as
'12.3 ms [11.0, 14.2], n=5' (`{{name|.2f}}` with that format), `{{median:name}}` its median
alone and `{{vs:a|b}}` says whether a is lower or higher than b or "not distinguishable at this
N" (`readings.compare`). A placeholder that names no reading is an error: the text cannot
outlive a number that a later matrix no longer measures. `archlab reference` writes the result
into README.md between `BEGIN` and `END`.
"""

from __future__ import annotations

import re
from pathlib import Path

from archlab.analysis.readings import Reading, compare

TEMPLATE = Path(__file__).with_name("gallery.md")
BEGIN = (
    "<!-- gallery: written by `archlab reference` from results/reference/readings.json; "
    "edit archlab/figures/gallery.md, not here -->"
)
END = "<!-- /gallery -->"
_PLACEHOLDER = re.compile(
    r"\{\{\s*(?:(?P<op>median|vs):)?(?P<body>[^}|]+)(?:\|(?P<arg>[^}]+))?\}\}"
)


class MissingReading(KeyError):
    """The gallery names a reading the run set does not have."""


def auto_format(value: float) -> str:
    """Three significant figures at most, never a trailing exponent."""
    size = abs(value)
    if size >= 100:
        return "{:.0f}"
    if size >= 10:
        return "{:.1f}"
    if size >= 1:
        return "{:.2f}"
    return "{:.3f}"


def _get(readings: dict[str, Reading], name: str) -> Reading:
    try:
        return readings[name.strip()]
    except KeyError:
        raise MissingReading(f"the gallery quotes {name.strip()!r}, not in readings.json") from None


def render(readings: dict[str, Reading], template: str | None = None) -> str:
    """The gallery's markdown with every placeholder filled from `readings`."""
    text = TEMPLATE.read_text() if template is None else template

    def fill(m: re.Match[str]) -> str:
        op, body, arg = m["op"], m["body"], m["arg"]
        if op == "vs":
            return compare(_get(readings, body), _get(readings, arg or ""))
        r = _get(readings, body)
        fmt = "{:" + arg.strip() + "}" if arg else auto_format(r.median)
        if op == "median":
            unit = "" if r.unit == "ratio" else f" {r.unit}"
            return f"{fmt.format(r.median)}{unit}"
        return r.text(fmt)

    return _PLACEHOLDER.sub(fill, text).strip() + "\n"


def update(readme: Path, gallery: str) -> None:
    """Put `gallery` between the README's markers (which must both be there, in order)."""
    text = readme.read_text()
    start, end = text.find(BEGIN), text.find(END)
    if start < 0 or end < start:
        raise ValueError(f"{readme}: no {BEGIN!r} ... {END!r} block to write the gallery into")
    readme.write_text(text[: start + len(BEGIN)] + "\n" + gallery + text[end:])


def written(readme: Path) -> str:
    """The gallery as README.md holds it now."""
    text = readme.read_text()
    start, end = text.find(BEGIN), text.find(END)
    return text[start + len(BEGIN) : end].lstrip("\n") if 0 <= start < end else ""
