"""`archlab report`: one self-contained HTML page per run or comparison; `compare`'s warning.

Built from the committed reference runs (real, finished runs whose raw files are gzipped). The
page must open offline (every image a data: URI, no script, no style sheet or font to fetch),
show one image per figure and the percentile table, and warn when, and only when, the runs
differ in more than the variant. `compare --markdown -` / `--csv -` print only that table.
When Chromium is installed the page is rendered headless and the screenshot looked at.
"""

from __future__ import annotations

import base64
import copy
import csv
import io
import re
import shutil
import tempfile
import time
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from archlab import cli
from archlab.analysis import compare
from archlab.analysis.runset import ENDPOINT_ORDER
from archlab.figures import report
from archlab.figures.style import VARIANT_COLORS
from archlab.host import procs
from archlab.rundir import read_json, read_meta

REFERENCE = Path(__file__).resolve().parents[1] / "results" / "reference" / "runs"
LATENCY = [REFERENCE / f"latency-{v}-r1" for v in ("monolith", "multiprocess", "distributed")]
FAULT = REFERENCE / "crash-orders-monolith-r1"
PINNED = REFERENCE / "scaling-monolith-1cpu-r1"
FIGURES = ("latency over time", "throughput and errors", "CPU and memory", "GC pauses")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_TIMEOUT_S = 90.0

# attributes through which a page makes the browser fetch something
RESOURCE_ATTRS = {"src", "href", "srcset", "poster", "data", "action", "formaction", "xlink:href"}


class _Resources(HTMLParser):
    """Every resource a page refers to (attributes, style sheets) and every tag that fetches."""

    def __init__(self) -> None:
        super().__init__()
        self.refs: list[tuple[str, str, str]] = []  # (tag, attribute, value)
        self.fetching_tags: list[str] = []
        self.images: list[dict[str, str]] = []
        self.styles: list[str] = []
        self._in_style = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k: v or "" for k, v in attrs}
        if tag in ("script", "link", "iframe", "object", "embed", "base"):
            self.fetching_tags.append(tag)
        if tag == "img":
            self.images.append(values)
        for name, value in values.items():
            if name in RESOURCE_ATTRS:
                self.refs.append((tag, name, value))
            if name == "style":
                self.styles.append(value)
        self._in_style = tag == "style"

    def handle_endtag(self, tag: str) -> None:
        self._in_style = False

    def handle_data(self, data: str) -> None:
        if self._in_style:
            self.styles.append(data)


def parse(page: str) -> _Resources:
    found = _Resources()
    found.feed(page)
    return found


def external(page: str) -> list[str]:
    """What in the page would make a browser go out: non-data, non-anchor refs, fetching tags,
    style sheet urls or imports. URLs in the text itself are not resources."""
    found = parse(page)
    bad = [
        f"<{tag} {name}={value[:60]!r}>"
        for tag, name, value in found.refs
        if not (value.startswith("data:") or value.startswith("#"))
    ]
    bad += [f"<{tag}>" for tag in found.fetching_tags]
    bad += [s[:80] for s in found.styles if re.search(r"url\(|@import", s)]
    return bad


def images(page: str) -> list[bytes]:
    """The decoded PNG of every <img>; each must be an inline data: URI."""
    out = []
    for img in parse(page).images:
        src = img.get("src", "")
        assert src.startswith("data:image/png;base64,"), src[:60]
        out.append(base64.b64decode(src.split(",", 1)[1], validate=True))
    return out


@pytest.fixture(scope="module")
def three(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, list[str]]:
    """The report on the three latency ramps (one per variant), written by the CLI's function."""
    out = tmp_path_factory.mktemp("report") / "three.html"
    diffs = report.write_report(LATENCY, out)
    return out, out.read_text(encoding="utf-8"), diffs


@pytest.fixture(scope="module")
def mixed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, list[str]]:
    """A ramp against a closed-loop fault run and a pinned ramp: nothing like like with like."""
    out = tmp_path_factory.mktemp("report") / "mixed.html"
    diffs = report.write_report([LATENCY[0], FAULT, PINNED], out)
    return out, out.read_text(encoding="utf-8"), diffs


def test_a_report_on_one_run_is_one_self_contained_page(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "sub" / "one.html"
    assert cli.main(["report", str(FAULT), "-o", str(out)]) == 0
    assert f"written: {out}" in capsys.readouterr().out
    page = out.read_text(encoding="utf-8")
    assert external(page) == []
    pngs = images(page)
    assert len(pngs) == len(FIGURES)
    assert all(p.startswith(PNG_MAGIC) for p in pngs)
    assert 'class="warning"' not in page  # one run differs from nothing
    assert 'id="percentiles"' in page and "p99.9 ms" in page
    for endpoint in ENDPOINT_ORDER:
        assert f"<th>{endpoint}</th>" in page
    assert 'id="faults"' in page and "crash" in page  # the fault run's injected crash


def test_three_latency_ramps_get_every_figure_and_differ_only_in_their_own_fork_defaults(
    three: tuple[Path, str, list[str]],
) -> None:
    """The monolith runs `fork_gc` as-is and the family `freeze` by default: a knob both have,
    so the report names it; nothing else about the three ramps differs."""
    _, page, diffs = three
    assert diffs == ["knob fork_gc: as-is (latency-monolith-r1); freeze (latency-multiprocess-r1)"]
    assert external(page) == []
    assert len(images(page)) == len(FIGURES)
    assert 'class="warning"' in page and "fork_gc" in page
    for run in LATENCY:
        assert page.count(f"<th>{run.name}</th>") >= 1 + len(ENDPOINT_ORDER)  # a row each
    assert "latency-distributed-r1 / latency-monolith-r1" in page  # the ratio columns


def test_the_tables_hold_the_summaries_numbers(three: tuple[Path, str, list[str]]) -> None:
    _, page, _ = three
    runs = report.load_runs(LATENCY)
    table = report.percentile_table(runs)
    for run in LATENCY:
        summary = read_json(run / "summary.json") or {}
        for endpoint in ("ALL", *ENDPOINT_ORDER):
            p99 = summary["endpoints"][endpoint]["latency_ms"]["p99"]
            assert table.loc[(endpoint, run.name), "p99 ms"] == f"{p99:,.1f}"
            assert f"<td>{p99:,.1f}</td>" in page
    base = read_json(LATENCY[0] / "summary.json") or {}
    other = read_json(LATENCY[2] / "summary.json") or {}
    cpu = [s["server"]["total"]["cpu_ms_per_request"] for s in (base, other)]
    heads = report.headline_table(runs)
    want = f"×{cpu[1] / cpu[0]:.2f}"
    assert (
        heads.loc["server CPU ms/request", "latency-distributed-r1 / latency-monolith-r1"] == want
    )


def test_runs_that_differ_get_a_warning_naming_how(mixed: tuple[Path, str, list[str]]) -> None:
    _, page, diffs = mixed
    assert external(page) == []
    assert len(images(page)) == len(FIGURES)
    box = re.search(r'<div class="warning".*?</div>', page, re.S)
    assert box is not None, "no warning box"
    for aspect in ("scenario", "CPU pinning"):  # the fault run is an open loop too
        assert any(d.startswith(aspect) for d in diffs), aspect
        assert aspect in box.group(0)
    assert "Comparable" not in page


def test_differences_name_the_dataset_the_loop_and_the_pinning() -> None:
    base = read_meta(LATENCY[0])
    other = copy.deepcopy(base)
    other["run_id"] = "other"
    other["dataset_size"] = "tiny"
    other["load"]["loop"] = "closed"
    other["cpu_pinning"] = {"server": [0], "generator": [1], "shared": False}
    diffs = compare.differences([base, other])
    assert [d.split(":")[0] for d in diffs] == ["dataset", "load loop", "CPU pinning"]
    dataset, loop, pinning = diffs
    assert "small (latency-monolith-r1)" in dataset and "tiny (other)" in dataset
    assert "open (latency-monolith-r1)" in loop and "closed (other)" in loop
    assert "server CPUs 0" in pinning and "server CPUs all" in pinning
    assert compare.warning_text(diffs).startswith("WARNING")
    assert compare.warning_text([]) == ""


def test_a_run_without_server_telemetry_is_a_difference() -> None:
    """A --target run has no server-side records: comparing its CPU or GC with a run that has
    them needs a warning (the reference's runs predate the field, so it is left out there)."""
    base = read_meta(LATENCY[0])
    target = copy.deepcopy(base)
    target["run_id"] = "target"
    base["server_telemetry"] = "collected"
    target["server_telemetry"] = "not collected (--target)"
    (line,) = compare.differences([base, target])
    assert line.startswith("server telemetry:") and "not collected (--target) (target)" in line


def test_only_knobs_two_runs_share_can_differ() -> None:
    metas = [read_meta(run) for run in LATENCY]
    fork = "knob fork_gc: as-is (latency-monolith-r1); freeze (latency-multiprocess-r1)"
    assert compare.differences(metas) == [fork]  # monolith workers vs distributed replicas: no
    more = copy.deepcopy(metas[1])
    more["run_id"] = "more-threads"
    more["knobs"]["threads"] = 16
    assert compare.differences([*metas, more]) == [  # each design's own fork_gc default
        fork.replace("latency-multiprocess-r1)", "latency-multiprocess-r1, more-threads)"),
        "knob threads: 8 (latency-monolith-r1, latency-multiprocess-r1, latency-distributed-r1); "
        "16 (more-threads)",
    ]


def test_compare_markdown_to_stdout_is_only_markdown(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["compare", str(LATENCY[0]), str(FAULT), "--markdown", "-"]
    assert cli.main(args) == 0
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert lines[0] == f"| measure | {LATENCY[0].name} | {FAULT.name} |"
    assert lines[1] == "|---|---:|---:|"
    assert all(line.startswith("| ") and line.endswith(" |") for line in lines[2:]), out[:400]
    assert "WARNING" in err and "scenario" in err  # the warning goes to stderr


def test_compare_csv_to_stdout_is_only_csv(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    md = tmp_path / "cmp.md"
    assert cli.main(["compare", *map(str, LATENCY), "--csv", "-", "--markdown", str(md)]) == 0
    out, err = capsys.readouterr()
    rows = list(csv.reader(io.StringIO(out)))
    assert rows[0] == ["measure", *(r.name for r in LATENCY)]
    assert all(len(r) == 1 + len(LATENCY) for r in rows)
    assert md.read_text().startswith("| measure |") and f"written: {md}" in err
    assert "knob fork_gc" in err and "knob threads" not in err  # only the designs' defaults


def test_compare_prints_the_text_table_and_the_warning(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["compare", str(LATENCY[0]), str(PINNED)]) == 0
    out, err = capsys.readouterr()
    assert "throughput req/s" in out and "WARNING" not in out
    assert "CPU pinning" in err


def test_a_report_of_no_positive_bucket_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "r.html"
    assert cli.main(["report", str(FAULT), "-o", str(out), "--bucket", "0"]) == 2
    assert "bucket" in capsys.readouterr().err and not out.exists()


def _screenshot(page: Path, png: Path, height: int = 2400) -> np.ndarray:
    """Chromium headless renders the page; its process group is stopped whatever happens."""
    from matplotlib.image import imread

    with tempfile.TemporaryDirectory(prefix="archlab-chromium-") as profile:
        cmd = [
            str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--no-first-run", f"--user-data-dir={profile}", f"--screenshot={png}",
            f"--window-size=1280,{height}", page.resolve().as_uri(),
        ]  # fmt: skip
        log = png.with_suffix(".log")
        with procs.running(cmd, name="chromium", log_path=log, grace_s=5.0) as chromium:
            deadline = time.monotonic() + CHROMIUM_TIMEOUT_S
            while chromium.popen.poll() is None and time.monotonic() < deadline:
                time.sleep(0.1)
            assert chromium.popen.poll() is not None, f"chromium still running: {log}"
    assert png.exists(), procs.log_tail(log)
    return imread(png)[:, :, :3]


def _share_of(shot: np.ndarray, hex_color: str, tol: float = 0.03) -> float:
    rgb = np.array([int(hex_color[i : i + 2], 16) / 255 for i in (1, 3, 5)])
    return float((np.abs(shot - rgb).max(axis=2) < tol).mean())


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)")
def test_chromium_renders_the_figures_offline(
    three: tuple[Path, str, list[str]], tmp_path: Path
) -> None:
    shot = _screenshot(three[0], tmp_path / "three.png")
    assert shot.shape[:2] == (2400, 1280)
    assert shot.std() > 0.05  # not a blank page
    for variant, hex_color in VARIANT_COLORS.items():  # drawn only inside the figures
        assert _share_of(shot, hex_color) > 1e-4, f"no {variant} lines: images not shown?"
    assert _share_of(shot, "#fff4e0") == 0.0  # no warning box


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)")
def test_chromium_shows_the_warning_box(mixed: tuple[Path, str, list[str]], tmp_path: Path) -> None:
    shot = _screenshot(mixed[0], tmp_path / "mixed.png", height=900)
    assert _share_of(shot, "#fff4e0") > 0.01  # the box's background, above the fold
    assert _share_of(shot, "#c77700") > 0.0005  # and its border
