"""The run report: content from a full run, partial runs, escaping, and a real headless browser."""

from __future__ import annotations

import base64
import json
import re
import shutil
from pathlib import Path

import pytest

from r1lab.cli import main
from r1lab.errors import UserError
from r1lab.io import atomic_write_json, write_jsonl
from r1lab.report import reflection_frequency, series_by_stage, write_report

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
EVIL = "<script>alert('x')</script></pre><img src=x onerror=alert(1)>"


def make_run(run: Path, *, steps: int = 30) -> Path:
    """A run directory shaped like the pipeline's: GRPO then SFT, with metrics, samples, summary."""
    metrics = []
    for s in range(1, steps + 1):
        acc, fmt = min(1.0, 0.1 + s / steps), min(1.0, s / (steps / 2))
        metrics.append(
            {
                "stage": "grpo",
                "step": s,
                "time": 1000.0 + s,
                "loss": 0.01 * (-1) ** s,
                "reward": acc + fmt,
                "reward_std": 0.3,
                "rewards/accuracy/mean": acc,
                "rewards/format/mean": fmt,
                "completions/mean_length": 40 + s,
                "completions/clipped_ratio": max(0.0, 0.5 - s / steps),
                "frac_reward_zero_std": 0.8 - 0.5 * s / steps,
                "kl": 0.001 * s,
                "entropy": 2.0 - s / steps,
                "learning_rate": 1e-6,
            }
        )
    metrics += [{"stage": "sft", "step": s, "loss": 2.0 / s, "learning_rate": 2e-5} for s in range(1, 6)]
    write_jsonl(run / "metrics.jsonl", metrics)
    with open(run / "metrics.jsonl", "a") as f:
        f.write('{"stage": "grpo", "step": 99, "rew')  # a torn last line, as a kill leaves it
    samples = []
    for s in (1, 10, 20, 30):
        for j in range(4):
            text = "<think>12-3=9</think><answer>9</answer>"
            if j >= 4 - s // 10:  # 0, 1, 2, 3 of 4 at steps 1, 10, 20, 30
                text = "<think>12-3=8. Wait, let me check: 12-3=9</think><answer>9</answer>"
            samples.append(
                {
                    "stage": "grpo",
                    "step": s,
                    "prompt": [{"role": "system", "content": "sys"}, {"role": "user", "content": "12 - 3?"}],
                    "completion": text if j else EVIL,
                    "solution": "9",
                    "rewards": {"accuracy": 1.0, "format": 1.0},
                }
            )
    write_jsonl(run / "samples.jsonl", samples)
    atomic_write_json(
        run / "summary.json",
        {
            "name": "unit",
            "stages": [
                {
                    "name": "grpo",
                    "kind": "grpo",
                    "status": "done",
                    "seconds": 12.5,
                    "model": str(run / "grpo/model"),
                    "metrics_before": {"accuracy": 0.1, "format_rate": 0.0, "mean_completion_tokens": 92.0},
                    "metrics_after": {"accuracy": 0.4, "format_rate": 0.9, "mean_completion_tokens": 31.5},
                    "achieved": "improved: reward 0.20 -> 1.90; held-out accuracy 10.0% -> 40.0%",
                },
                {
                    "name": "sft",
                    "kind": "sft",
                    "status": "done",
                    "seconds": 3.0,
                    "metrics_after": {"accuracy": 0.5},
                },
            ],
        },
    )
    (run / "config.yaml").write_text("name: unit\nstages: [grpo, sft]  # <b>not bold</b>\n")
    (run / "grpo" / "model").mkdir(parents=True)
    (run / "tb" / "grpo").mkdir(parents=True)
    # held-out answers of the base model and after sft, as evaluate writes them (items.jsonl)
    for label, right in (("base", {"a"}), ("sft", {"a", "b"})):
        write_jsonl(
            run / "evals" / label / "items.jsonl",
            [
                {"key": k, "problem": f"problem {k}: 12 - 3?", "reference": "9", "answers": [a],
                 "correct": [k in right], "completions": [f"<think>{label} {k}</think><answer>{a}</answer>"]}
                for k, a in (("a", "9"), ("b", "9" if "b" in right else "8"), ("c", None))
            ],
        )  # fmt: skip
    return run


def images(html: str) -> list[bytes]:
    return [base64.b64decode(b) for b in re.findall(r'src="data:image/png;base64,([^"]+)"', html)]


def test_full_run_report_has_every_section_and_valid_images(tmp_path):
    run = make_run(tmp_path / "run")
    path = write_report(run)
    assert path == run / "report.html"
    html = path.read_text()
    pngs = images(html)
    # grpo: rewards, format rate, length, zero-std, clipped, kl, entropy, loss, lr (9); sft: loss, lr (2);
    # eval: accuracy, format rate, length (3); reflection (1)
    assert len(pngs) == 15
    assert all(p.startswith(b"\x89PNG\r\n\x1a\n") and len(p) > 1000 for p in pngs)
    assert html.count("<img ") == 15
    for text in (
        "Evaluation before / after",
        "Reflection words",
        "Sample completions",
        "metrics.jsonl: skipped 1",
    ):
        assert text in html
    assert "<td>40.0%</td>" in html  # accuracy after grpo, in the eval table: rates in percent
    assert '<tr><td class="l">sft (after)</td><td>50.0%</td>' in html


def test_report_answers_side_by_side_small_tables_relative_paths_and_tensorboard(tmp_path):
    """#24 item 11: base and final answers to the same held-out problems (right/wrong marked, the changed one
    first), the "achieved" sentence as a verdict and a small table, paths relative to the run folder, a link
    to the TensorBoard logs; a 0% bar is drawn (pixels in the bar's colour at the axis)."""
    run = make_run(tmp_path / "run")
    html = write_report(run).read_text()
    section = html.split("Held-out answers: base vs sft", 1)[1]
    assert "evals/base/items.jsonl" in section and "1 answered right by one and wrong by the other" in section
    first = section.split("<tr>")[2]  # the first problem row: b, wrong before, right after
    assert "problem b" in first and first.index("&#10007; wrong") < first.index("&#10003; right")
    assert "<code>no answer</code>" in section
    assert '<b>improved</b><table class="mini">' in html and "<td>10.0%</td><td>40.0%</td>" in html
    assert '<a href="grpo/model/"><code>grpo/model</code></a>' in html and str(run / "grpo") not in html
    assert '<a href="tb/"><code>tb/</code></a>' in html


def test_a_zero_percent_bar_is_visible():
    import io

    from PIL import Image

    from r1lab.report import eval_bar_plot

    b64 = eval_bar_plot([{"name": "g", "metrics_before": {"format_rate": 0.0}, "metrics_after": {"format_rate": 0.0}}],
                        "format_rate")  # fmt: skip
    img = Image.open(io.BytesIO(base64.b64decode(b64))).convert("RGB")
    w, h = img.size
    axis_band = [
        img.getpixel((x, y)) for y in range(int(h * 0.75), h) for x in range(w)
    ]  # the legend is above
    assert sum(1 for px in axis_band if px[2] > 150 and px[0] < 80 and px[1] < 160) > 20  # matplotlib's C0


def test_report_escapes_completions_and_config(tmp_path):
    html = write_report(make_run(tmp_path / "run")).read_text()
    assert "<script>" not in html and "onerror=alert" not in html.replace("onerror=alert(1)&gt;", "")
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in html
    assert "&lt;b&gt;not bold&lt;/b&gt;" in html


def test_reflection_frequency_rises_in_the_fixture(tmp_path):
    run = make_run(tmp_path / "run")
    samples = [json.loads(x) for x in (run / "samples.jsonl").read_text().splitlines()]
    freq = reflection_frequency(samples)["grpo"]
    assert freq["wait"] == [(1.0, 0.0), (10.0, 0.25), (20.0, 0.5), (30.0, 0.75)]
    assert freq["let me check"] == freq["wait"]
    assert all(v == 0 for _, v in freq["hmm"])


def test_reflection_words_match_whole_words_only():
    freq = reflection_frequency(
        [{"step": 1, "completion": "The waiter verified"}, {"step": 1, "completion": "Hmm. WAIT."}],
        phrases=("wait", "verify", "hmm"),
    )["train"]
    assert freq == {"wait": [(1.0, 0.5)], "verify": [(1.0, 0.0)], "hmm": [(1.0, 0.5)]}


def test_series_skip_non_numbers_and_keep_stages_apart():
    s = series_by_stage(
        [{"stage": "a", "step": 1, "x": 1.0, "y": "nan?"}, {"stage": "b", "step": 1, "x": float("inf")}]
    )
    assert s == {"a": {"x": [(1.0, 1.0)]}}


def test_partial_runs_still_render(tmp_path):
    sft_only = tmp_path / "sft-only"
    sft_only.mkdir()
    (sft_only / "metrics.jsonl").write_text("")
    atomic_write_json(
        sft_only / "summary.json",
        {"name": "x", "stages": [{"name": "sft", "kind": "sft", "status": "running"}]},
    )
    html = write_report(sft_only).read_text()
    assert (
        "no training metrics logged" in html
        and "no samples logged" in html
        and "no evaluation metrics" in html
    )
    assert images(html) == []

    # killed during its first stage: the base model's measurement is shown, not "no evaluation metrics"
    base = {"accuracy": 0.25, "format_rate": 0.0, "mean_completion_tokens": 90.0, "n_items": 8}
    atomic_write_json(
        sft_only / "summary.json",
        {"name": "x", "base_metrics": base, "stages": [{"name": "sft", "kind": "sft", "status": "running"}]},
    )
    html = write_report(sft_only).read_text()
    assert '<td class="l">base model</td><td>25.0%</td><td>0.0%</td>' in html
    assert "no evaluation metrics" not in html

    empty = tmp_path / "empty"
    empty.mkdir()
    html = write_report(empty).read_text()
    assert "not found in this run: summary.json, metrics.jsonl, samples.jsonl" in html

    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "summary.json").write_text("{not json")
    write_jsonl(
        broken / "metrics.jsonl", [{"stage": "grpo", "step": 1, "reward": 0.5}, {"step": "x", "reward": None}]
    )
    html = write_report(broken).read_text()
    assert "summary.json: unreadable" in html and len(images(html)) == 1


def test_cli_report(tmp_path, capsys):
    run = make_run(tmp_path / "run")
    assert main(["report", str(run), "--out", str(tmp_path / "r.html")]) == 0
    assert (tmp_path / "r.html").is_file() and not (run / "report.html").exists()
    assert main(["report", str(tmp_path / "missing")]) == 2
    assert "run directory not found" in capsys.readouterr().err
    with pytest.raises(UserError):
        write_report(tmp_path / "missing")


@pytest.mark.browser
def test_report_renders_in_headless_chromium(tmp_path):
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (run `make browser`, which `make test` does)")
    playwright = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (make setup)")
    path = write_report(make_run(tmp_path / "run"))
    problems: list[str] = []
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        try:
            page = browser.new_page()
            page.on(
                "console",
                lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None,
            )
            page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
            page.on("requestfailed", lambda r: problems.append(f"request failed: {r.url[:80]}"))
            page.goto(path.resolve().as_uri(), wait_until="load")
            imgs = page.evaluate(
                "Array.from(document.images).map(i => ({complete: i.complete, w: i.naturalWidth, h: i.naturalHeight}))"
            )
            title = page.title()
            answers_shown = page.get_by_text("Held-out answers: base vs sft").is_visible()
            marks = page.locator("span.ok, span.bad").count()
            page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
        finally:
            browser.close()
    assert title == "r1lab report: unit"
    assert answers_shown and marks == 6  # 3 problems x (base, final), each marked right or wrong
    assert len(imgs) == 15  # as in test_full_run_report_has_every_section_and_valid_images
    assert all(i["complete"] and i["w"] > 100 and i["h"] > 100 for i in imgs), imgs
    assert problems == []
    assert (tmp_path / "report.png").stat().st_size > 10_000


def test_report_shows_the_paired_test_against_the_base_model(tmp_path):
    from r1lab.stats import mcnemar

    run = make_run(tmp_path / "run")
    summary = json.loads((run / "summary.json").read_text())
    summary["stages"][0]["vs_base"] = {"format_rate": mcnemar([False] * 10, [True] * 9 + [False])}
    (run / "summary.json").write_text(json.dumps(summary))
    html = write_report(run).read_text()
    assert "Paired test against the base model" in html
    assert "<td>9</td><td>0</td><td>0.00391</td>" in html  # gained, lost, p
