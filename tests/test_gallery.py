"""The README's gallery: prose written once, every number filled from readings.json."""

from __future__ import annotations

from pathlib import Path

import pytest

from archlab.analysis.readings import Reading
from archlab.analysis.rounds import NOT_DISTINGUISHABLE
from archlab.figures import gallery

READINGS = {
    "a.p99_ms": Reading("a.p99_ms", 12.34, 11.0, 14.2, 5, "ms"),
    "b.p99_ms": Reading("b.p99_ms", 13.0, 12.0, 15.0, 5, "ms"),
    "c.p99_ms": Reading("c.p99_ms", 50.0, 45.0, 55.0, 5, "ms"),
    "a.ratio": Reading("a.ratio", 2.5, 2.0, 3.0, 5, "ratio"),
}


def test_a_placeholder_quotes_the_median_its_interval_and_n() -> None:
    assert gallery.render(READINGS, "p99 {{a.p99_ms}}.") == "p99 12.3 ms [11.0, 14.2], n=5.\n"
    assert gallery.render(READINGS, "{{a.p99_ms|.2f}}") == "12.34 ms [11.00, 14.20], n=5\n"
    assert gallery.render(READINGS, "{{median:a.ratio}}x") == "2.50x\n"


def test_a_comparison_ranks_only_intervals_that_are_apart() -> None:
    assert gallery.render(READINGS, "{{vs:a.p99_ms|c.p99_ms}}") == "lower\n"
    assert gallery.render(READINGS, "{{vs:a.p99_ms|b.p99_ms}}") == NOT_DISTINGUISHABLE + "\n"


def test_a_placeholder_naming_no_reading_is_an_error() -> None:
    with pytest.raises(gallery.MissingReading, match="gone.p99_ms"):
        gallery.render(READINGS, "{{gone.p99_ms}}")


def test_every_placeholder_of_the_gallery_is_well_formed() -> None:
    text = gallery.TEMPLATE.read_text()
    assert text.count("{{") == text.count("}}") == len(gallery._PLACEHOLDER.findall(text))
    assert "![" in text


def test_the_gallery_goes_between_the_readmes_markers_and_nowhere_else(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n\n{gallery.BEGIN}\nold\n{gallery.END}\n\n## after\n")
    gallery.update(readme, "new text\n")
    assert readme.read_text() == f"# x\n\n{gallery.BEGIN}\nnew text\n{gallery.END}\n\n## after\n"
    assert gallery.written(readme) == "new text\n"
    readme.write_text("# no markers\n")
    with pytest.raises(ValueError, match="no .* block"):
        gallery.update(readme, "new text\n")
