"""The HTML report: written from a run's rows and verdicts, read back by ``navya report``, and
rendered by a real headless browser (the distribution's Chromium, driven by Selenium through
the distribution's chromedriver; nothing is downloaded). Without a browser the rendering test is
skipped loudly; CI installs one (.ci/run)."""

from __future__ import annotations

import json
import shutil

import pytest

from navya.reporting.page import (
    ReportError,
    append_history,
    read_history,
    report_from_dir,
    write_html_report,
    write_run,
)

CLASSES = ("disc", "bar", "dot")


def _row(model, name, *, speedup, drop, status, ap):
    return {"model": model, "name": name, "map": 0.86 - drop / 100, "speedup": speedup,
            "map_drop_points": drop, "latency_ms_median": 36.0 / (speedup or 1.0),
            "size_mb": 13.2, "status": status,
            **{f"ap_{c}": a for c, a in zip(CLASSES, ap, strict=True)}}


def _run():
    rows = [_row("mobilenet_v2", "fp32", speedup=None, drop=0.0, status="reference",
                 ap=(0.98, 0.70, 0.69)),
            _row("mobilenet_v2", "int8-ptq", speedup=3.1, drop=0.1, status="PASS",
                 ap=(0.98, 0.69, 0.70)),
            _row("mobilenet_v2", "prune-random-30", speedup=1.0, drop=60.0,
                 status="FAIL: max_map_drop_points", ap=(0.30, 0.05, 0.0)),
            _row("mobilenet_v3_large", "mobilenet_v3_large:fp32", speedup=None, drop=0.0,
                 status="reference", ap=(0.97, 0.60, 0.50))]
    verdicts = {
        "int8-ptq": {"max_map_drop_points": {"outcome": "pass", "message": "within",
                                             "measured": 0.1, "limit": 0.5},
                     "baseline": {"outcome": "pass", "message": "matches baselines/int8-ptq.json"}},
        "prune-random-30": {
            "max_map_drop_points": {"outcome": "fail", "measured": 60.0, "limit": 1.0,
                                    "message": "variant 'prune-random-30' BROKE budget "
                                               "max_map_drop_points: measured 60, budget <= 1"},
            "min_speedup": {"outcome": "no budget", "message": "NO BUDGET min_speedup"}},
    }
    record = {"created": "2026-12-01T15:00:00Z", "git_commit": "abc123", "incomplete": None,
              "machine": {"cpu_model": "AMD EPYC", "cores": 2, "isa": ["avx512_vnni"],
                          "torch_version": "2.14.1"}, "machine_slug": "amd-epyc-2c",
              "models": {"mobilenet_v2": {"checkpoint_sha256": "94a5cd8c"}},
              "verdicts": verdicts, "notes": ["a note"],
              "budgets": {"int8-ptq": {"max_map_drop_points": 0.5, "min_speedup": 2.5}}}
    return rows, record


def test_the_page_puts_failures_first_and_holds_every_section(tmp_path):
    rows, record = _run()
    history = tmp_path / "history" / "m.csv"
    for t in ("2026-11-29", "2026-11-30"):
        append_history(history, rows, timestamp=t, git_commit="x")
    assert len(read_history(history)) == 8
    paths = write_html_report(tmp_path, rows, record, history_path=history)
    page = (tmp_path / "index.html").read_text()
    assert [p.name for p in paths] == ["index.html", "verdicts.md"]
    assert page.index("prune-random-30") < page.index("int8-ptq</td>")  # failures first
    for needle in ["id='overall'>FAIL", "id='matrix'", "id='verdicts'", "id='tradeoff'",
                   "data:image/png;base64,", "id='per-class'", "id='trends'<", "<svg",
                   "id='provenance'", "94a5cd8c", "a note", "-68.0"]:  # 0.30 - 0.98: -68 pts
        assert needle in page.replace("id='trends'><tr>", "id='trends'<"), needle
    assert "http://" not in page and "https://" not in page and "<script" not in page
    md = (tmp_path / "verdicts.md").read_text()
    assert md.splitlines()[0] == "## navya: 1 failing check(s) in 1 of 2 variant(s)"
    assert md.index("FAIL") < md.index("PASS")


def test_navya_report_rewrites_the_page_from_saved_results(tmp_path, capsys):
    from navya.cli import main
    from navya.reporting.rows import write_csv

    rows, record = _run()
    write_csv(tmp_path / "summary.csv", rows, list(rows[0]))
    with pytest.raises(ReportError, match="run.json: no run record"):
        report_from_dir(tmp_path)
    write_run(tmp_path, record)
    assert main(["report", str(tmp_path)]) == 0
    assert "index.html" in capsys.readouterr().out
    assert "prune-random-30" in (tmp_path / "index.html").read_text()
    (tmp_path / "run.json").write_text("{broken")
    assert main(["report", str(tmp_path)]) == 2
    assert "run.json: not valid JSON" in capsys.readouterr().err
    (tmp_path / "run.json").write_text(json.dumps({"schema": 99}))
    with pytest.raises(ReportError, match="not a navya run record"):
        report_from_dir(tmp_path)


def test_the_trend_marks_this_run_only_where_its_history_line_is(tmp_path):
    """Issue 28, bug 3: "the red dot is this run" was said of an incomplete run (which adds no
    history line) and of a later `navya report` (newer runs follow it)."""
    rows, record = _run()
    history = tmp_path / "history" / "m.csv"
    for t in ("2026-11-29", "2026-11-30", record["created"]):
        append_history(history, rows, timestamp=t, git_commit="x")

    def page(rec):
        write_html_report(tmp_path, rows, rec, history_path=history)
        name = "index.INCOMPLETE.html" if rec.get("incomplete") else "index.html"
        return (tmp_path / name).read_text()

    complete = page(record)
    assert "data-this-run='yes'" in complete and "data-this-run='no'" not in complete
    assert "the red dot is this run" in complete
    incomplete = page({**record, "incomplete": "interrupted"})
    assert "data-this-run='yes'" not in incomplete and "data-this-run='no'" in incomplete
    assert "the red dot is this run" not in incomplete and "grey" in incomplete
    append_history(history, rows, timestamp="2026-12-02T09:00:00Z", git_commit="y")
    later = page(record)  # `navya report` on the older run's folder
    assert "data-this-run='yes'" not in later and "the red dot is this run" not in later


def test_an_incomplete_page_links_its_own_files_not_the_last_complete_runs(tmp_path):
    """Issue 28, bug 2: index.INCOMPLETE.html linked summary.csv, run.json, ... of the last
    complete run in the same folder."""
    rows, record = _run()
    for name in ("summary.csv", "summary.md", "tradeoff.png", "run.json",  # the complete run
                 "summary.INCOMPLETE.csv", "summary.INCOMPLETE.md", "tradeoff.INCOMPLETE.png",
                 "run.INCOMPLETE.json"):
        (tmp_path / name).write_text("x")
    paths = write_html_report(tmp_path, rows, {**record, "incomplete": "interrupted"})
    assert [p.name for p in paths] == ["index.INCOMPLETE.html", "verdicts.INCOMPLETE.md"]
    page = (tmp_path / "index.INCOMPLETE.html").read_text()
    links = page[page.index("id='links'"):]
    for name in ("summary.INCOMPLETE.csv", "summary.INCOMPLETE.md", "tradeoff.INCOMPLETE.png",
                 "run.INCOMPLETE.json", "verdicts.INCOMPLETE.md"):
        assert f"href='{name}'" in links, name
    for name in ("summary.csv", "summary.md", "tradeoff.png", "run.json", "verdicts.md"):
        assert f"href='{name}'" not in links, name
    complete = write_html_report(tmp_path, rows, record)[0].read_text()
    assert "href='summary.csv'" in complete and "INCOMPLETE" not in complete.split(
        "id='links'")[1]


def _rgb(css: str) -> tuple[int, int, int]:
    """``rgb(r, g, b)`` or ``rgba(r, g, b, a)`` (an opaque colour) as a tuple."""
    values = css[css.index("(") + 1:css.index(")")].split(",")
    assert len(values) == 3 or float(values[3]) == 1.0, css
    return tuple(int(float(v)) for v in values[:3])


def _contrast(a: tuple[int, int, int], b: tuple[int, int, int]) -> float:
    """WCAG 2 contrast ratio of two sRGB colours."""
    def luminance(c):
        lin = [(x / 255) / 12.92 if x / 255 <= 0.04045 else ((x / 255 + 0.055) / 1.055) ** 2.4
               for x in c]
        return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]

    hi, lo = sorted((luminance(a), luminance(b)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")


@pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER),
                    reason="BROWSER TEST SKIPPED: no chromium/chromedriver on this machine "
                           "(apt-get install chromium chromium-driver; CI installs them)")
def test_a_real_browser_renders_the_verdicts_the_plot_and_the_per_class_view(tmp_path):
    selenium = pytest.importorskip("selenium", reason="BROWSER TEST SKIPPED: selenium missing")
    del selenium
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By

    rows, record = _run()
    write_html_report(tmp_path, rows, record)
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1500,2400"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    try:
        driver.get((tmp_path / "index.html").as_uri())
        assert driver.find_element(By.ID, "overall").text == "FAIL"
        first = driver.find_elements(By.CSS_SELECTOR, "#verdicts tr[data-variant]")[0]
        assert first.get_attribute("data-variant") == "prune-random-30"
        assert first.get_attribute("data-outcome") == "fail"
        assert "fail" in first.get_attribute("class")
        badge = first.find_element(By.CSS_SELECTOR, ".badge")
        assert badge.text == "FAIL"
        assert badge.value_of_css_property("background-color") in ("rgba(207, 34, 46, 1)",
                                                                    "rgb(207, 34, 46)")
        matrix = driver.find_elements(By.CSS_SELECTOR, "#matrix tr[data-variant]")
        assert matrix[0].get_attribute("data-variant") == "prune-random-30"
        # issue 28, bug 9: a failing variant's row tint drew its marks white on pale pink; every
        # mark of the matrix, failing rows first, must read (WCAG contrast >= 4.5)
        marks = driver.find_elements(By.CSS_SELECTOR, "#matrix td[class]")
        assert any(m.find_element(By.XPATH, "..").get_attribute("class") == "fail"
                   for m in marks)
        for mark in marks:
            fg = _rgb(mark.value_of_css_property("color"))
            bg = _rgb(mark.value_of_css_property("background-color"))
            assert _contrast(fg, bg) >= 4.5, (mark.text, fg, bg)
        plot = driver.find_element(By.ID, "tradeoff")
        assert driver.execute_script("return arguments[0].complete && "
                                     "arguments[0].naturalWidth", plot) > 1000
        heat = driver.find_elements(By.CSS_SELECTOR, "#per-class tr")
        assert len(heat) == 1 + 2  # header + the two non-reference variants
        assert "-68.0" in driver.find_element(By.ID, "per-class").text
        shot = tmp_path / "index.png"
        driver.save_screenshot(str(shot))
        assert shot.stat().st_size > 10_000
    finally:
        driver.quit()


def test_trends_keep_each_models_history_apart(tmp_path):
    """The first model's cases carry no prefix: a run that gates another model first (`pytest
    benchmarks/ --navya-models tfod_person`) must not extend the default model's int8-ptq line
    (seen: 2.9x and 1.4x drawn as one trend)."""
    rows, record = _run()
    history = tmp_path / "history" / "m.csv"
    for t in ("2026-11-29", "2026-11-30"):
        append_history(history, rows, timestamp=t, git_commit="x")  # mobilenet_v2 first
    other = [{**r, "model": "tfod_person", "speedup": 1.4} for r in rows[:2]]
    for t in ("2026-12-01", record["created"]):
        append_history(history, other, timestamp=t, git_commit="y")  # tfod_person first
    write_html_report(tmp_path, other, record, history_path=history)
    page = (tmp_path / "index.html").read_text()
    trends = page[page.index("<table id='trends'>"):]
    trends = trends[:trends.index("</table>")]
    assert "<td class='num'>2</td>" in trends and "1.400–1.400" in trends, trends
    assert "3.100" not in trends  # mobilenet_v2's int8-ptq stays out of tfod_person's line
