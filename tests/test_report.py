"""The HTML report of a run folder: content and escaping, missing parts, and the page as headless
Chromium (Debian's package) renders it: every image decodes, the tables are there, the grids are drawn.

Chromium is required: without it the browser tests fail (they are not skipped); scripts/setup.sh
installs it when run as root."""

import json
import os
import re
import shutil
import signal
import subprocess
from html.parser import HTMLParser

import pytest
import torch
import yaml
from PIL import Image

from datadistill.errors import ConfigError
from datadistill.io import save_grid
from datadistill.io.report import render_report, write_report

RED = (255, 0, 0)
RED_SIZE = (90, 60)  # synthetic.png: a pure red image, so the screenshot can be searched for it
EXTRA_SIZE = (40, 30)


def fake_run(run, *, evaluation=True, curves=True, extra=True):
    """A run folder as datadistill distill, evaluate --out and an application would leave it."""
    run.mkdir(parents=True, exist_ok=True)
    metrics = {
        "method": "datadam", "dataset": "mnist", "ipc": 2, "init": "real", "model": "convnet", "iterations": 40,
        "iterations_requested": 40, "seed": 0, "distill_seconds": 12.345, "eval_seconds": 67.89, "num_eval": 3,
        "eval_epochs": 300, "eval_model": "convnet", "final_loss": 0.125,
        "loss_history": [[i, 4.0 / (i + 1)] for i in range(1, 41)], "package_version": "0.1.0",
        "skipped_iterations": 0, "learned_lr": None, "label_kind": "hard", "zca_eps": None,
        "accuracy_mean": 91.2345, "accuracy_std": 0.4321, "accuracies": [91.0, 91.8, 90.9],
        "train_accuracies": [100.0, 100.0, 99.5], "init_accuracy_mean": 70.5, "init_accuracy_std": 1.25,
        "init_accuracies": [69.0, 71.0, 71.5],
    }
    (run / "metrics.json").write_text(json.dumps(metrics))
    config = {"method": "datadam", "dataset": "mnist", "ipc": 2, "iterations": 40, "lr_img": 1.0,
              "method_args": {"attention_power": 4, "comment": "<script>alert('x')</script> & co"}}
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    gen = torch.Generator().manual_seed(0)
    save_grid(torch.randn(6, 1, 28, 28, generator=gen), torch.tensor([0, 0, 1, 1, 2, 2]), [0.5], [0.25],
              run / "init.png")
    Image.new("RGB", RED_SIZE, RED).save(run / "synthetic.png")
    (run / "distill.log").write_text("2025-01-01 INFO iteration 1 loss 4\n2025-01-01 INFO <done>\n")
    if evaluation:
        ev = {
            "file": str(run / "synthetic.safetensors"), "dataset": "mnist",
            "rows": [
                {"model": "convnet", "accuracy_mean": 91.5, "accuracy_std": 0.25, "accuracies": [91.25, 91.75],
                 "train_accuracy_mean": 99.75, "train_accuracy_std": 0.25, "eval_seconds": 42.0, "epochs": 300,
                 "lr": 0.01, "forward_flops": 12_300_000, "train_flops": 4.5e12},
                {"model": "convnet_bn", "accuracy_mean": 88.125, "accuracy_std": 1.5, "accuracies": [86.625, 89.625],
                 "train_accuracy_mean": 98.0, "train_accuracy_std": 1.0, "eval_seconds": 45.5, "epochs": 300,
                 "lr": 0.01, "forward_flops": 12_400_000, "train_flops": 4.6e12},
            ],
            "baseline": {"dataset": "mnist", "model": "convnet", "epochs": 20, "accuracy": 99.4, "train_accuracy": 99.9,
                         "train_seconds": 3600.0, "forward_flops": 12_300_000, "train_flops": 4.4e16},
            "cost": [
                {"model": "convnet", "synthetic_accuracy": 91.5, "baseline_accuracy": 99.4, "accuracy_gap": 7.9,
                 "time_speedup": 85.714, "flops_ratio": 9777.8, "synthetic_seconds": 42.0, "baseline_seconds": 3600.0},
                {"model": "convnet_bn", "synthetic_accuracy": 88.125, "baseline_accuracy": 99.4,
                 "accuracy_gap": 11.275, "time_speedup": 79.12, "flops_ratio": 9565.2, "synthetic_seconds": 45.5,
                 "baseline_seconds": 3600.0},
            ],
        }
        (run / "evaluation.json").write_text(json.dumps(ev))
    if curves:
        def r(offset, scale):
            return {"train_accuracy": [10, 80 + offset, 100], "test_accuracy": [10, 60 + offset, 90 + offset],
                    "seconds": [0.5 * scale, 5 * scale, 10 * scale]}

        data = {"synthetic": {"model": "convnet", "epochs": [0, 150, 300], "runs": [r(0, 1), r(1, 1.1)]},
                "whole_data": {"model": "convnet", "epochs": [0, 10, 20], "runs": [r(9, 300)]}}
        (run / "curves.json").write_text(json.dumps(data))
    if extra:
        Image.new("RGB", EXTRA_SIZE, (0, 128, 0)).save(run / "application_result.png")
    return run


class _Tables(HTMLParser):
    """Text of every table cell, by the table's class: {class: [[cell, ...], ...]} (body rows only)."""

    def __init__(self):
        super().__init__()
        self.tables, self._cls, self._row, self._cell, self._in_head = {}, None, None, None, False

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self._cls = dict(attrs).get("class") or f"table{len(self.tables)}"
            self.tables[self._cls] = []
        elif tag == "thead":
            self._in_head = True
        elif tag == "tr":
            self._row = []
        elif tag in ("td", "th"):
            self._cell = ""

    def handle_endtag(self, tag):
        if tag == "thead":
            self._in_head = False
        elif tag in ("td", "th") and self._row is not None:
            self._row.append(self._cell)
            self._cell = None
        elif tag == "tr" and self._row is not None and not self._in_head:
            self.tables[self._cls].append(self._row)
            self._row = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell += data


def tables(html):
    parser = _Tables()
    parser.feed(html)
    return parser.tables


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    run = fake_run(tmp_path_factory.mktemp("report") / "run")
    return write_report(run)


N_IMAGES = 5  # init, synthetic, loss curve, learning curves, application_result.png


def test_report_content(report):
    assert report.name == "report.html" and report.parent.name == "run"
    html = report.read_text(encoding="utf-8")
    assert [p.name for p in report.parent.iterdir() if p.name.endswith(".tmp")] == []
    # self-contained: no external resource of any kind
    assert "src=\"http" not in html and "<link" not in html and "url(" not in html and "@import" not in html
    assert re.findall(r'<img [^>]*src="([^"]{0,22})', html) == ["data:image/png;base64,"] * N_IMAGES
    assert f'data-images-total="{N_IMAGES}"' in html
    assert "<title>datadistill: datadam on mnist, IPC 2</title>" in html
    assert "<h1>datadam on mnist, IPC 2</h1>" in html
    # the config value is escaped: only the report's own script tag is in the page
    assert "<script>alert" not in html and html.count("<script>") == 1
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; co" in html
    t = tables(html)
    summary = dict(t["summary"])
    assert summary["test accuracy (%)"] == "91.23 ± 0.43" and summary["distillation time"] == "12.3 s"
    assert summary["iterations run"] == "40" and "learned lr" not in summary
    config = dict(t["config"])
    assert config["method_args.attention_power"] == "4"
    assert config["method_args.comment"] == "<script>alert('x')</script> & co"
    assert config["lr_img"] == "1.0"
    ev = t["evaluation"]
    assert [row[:3] for row in ev] == [
        ["synthetic (distill run)", "convnet", "91.23 ± 0.43"],
        ["initial set (distill run)", "convnet", "70.50 ± 1.25"],
        ["synthetic (synthetic.safetensors)", "convnet", "91.50 ± 0.25"],
        ["synthetic (synthetic.safetensors)", "convnet_bn", "88.12 ± 1.50"],
    ]
    assert ev[0][3:] == ["99.83 ± 0.24", "3", "300", "67.9 s"]
    assert ev[3][3:] == ["98.00 ± 1.00", "2", "300", "45.5 s"]
    assert t["baseline"] == [["mnist", "convnet", "20", "99.40", "99.90", "3600 s (1.0 h)", "12.3 M", "44 P"]]
    assert t["cost"] == [
        ["convnet", "91.50", "99.40", "7.90", "42.0 s", "3600 s (1.0 h)", "85.7×", "9777.8×"],
        ["convnet_bn", "88.12", "99.40", "11.28", "45.5 s", "3600 s (1.0 h)", "79.1×", "9565.2×"],
    ]
    for heading in ("Summary", "Configuration", "Synthetic images", "Distillation loss", "Evaluation",
                    "Learning curves", "Cost against training on the whole data", "Other figures", "Log"):
        assert f"<h2>{heading}</h2>" in html
    assert "application_result.png" in html and "&lt;done&gt;" in html
    assert 'class="note"' in html  # only the run-folder line: no optional part is missing
    assert html.count('class="note"') == 1


def test_report_missing_parts(tmp_path):
    run = fake_run(tmp_path / "run", evaluation=False, curves=False, extra=False)
    for name in ("config.yaml", "init.png", "distill.log"):
        (run / name).unlink()
    (run / "synthetic.png").write_bytes(b"not a png")
    out = write_report(run, tmp_path / "elsewhere" / "r.html")
    assert out == tmp_path / "elsewhere" / "r.html" and not (run / "report.html").exists()
    html = out.read_text(encoding="utf-8")
    for note in ("No config.yaml in this folder.", "No init.png in this folder.", "synthetic.png is not a PNG file",
                 "No evaluation.json in this folder", "No curves.json in this folder.", "No cost comparison"):
        assert note in html
    assert "Other figures" not in html and "<h2>Log</h2>" not in html
    assert html.count("<img ") == 1 and 'data-images-total="1"' in html  # the loss curve
    assert len(tables(html)["evaluation"]) == 2


def test_report_unreadable_optional_files(tmp_path):
    run = fake_run(tmp_path / "run")
    (run / "evaluation.json").write_text("{not json")
    (run / "curves.json").write_text(json.dumps({"synthetic": {"epochs": [], "runs": []}}))
    html = render_report(run)
    assert "evaluation.json could not be read" in html
    assert "curves.json could not be drawn (learning curves series &#x27;synthetic&#x27; has no epochs)" in html
    assert "baseline" not in tables(html) and "cost" not in tables(html)


def test_report_several_baselines(tmp_path):
    run = fake_run(tmp_path / "run")
    ev = json.loads((run / "evaluation.json").read_text())
    other = {**ev["baseline"], "model": "convnet_bn", "accuracy": 99.5}
    ev.update(baseline=None, baselines={"convnet": ev["baseline"], "convnet_bn": other})
    ev["cost"][1].update(time_speedup=None, flops_ratio=None)  # what evaluate writes when undefined
    (run / "evaluation.json").write_text(json.dumps(ev))
    t = tables(render_report(run))
    assert [(row[1], row[3]) for row in t["baseline"]] == [("convnet", "99.40"), ("convnet_bn", "99.50")]
    assert t["cost"][1][-2:] == ["–", "–"]


def test_report_coreset_run_without_loss_or_evaluation(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.json").write_text(json.dumps({"method": "random", "dataset": "mnist", "ipc": 1, "iterations": 0,
                                                  "loss_history": []}))
    html = write_report(run).read_text(encoding="utf-8")
    assert "No loss history in metrics.json" in html and "metrics.json holds no evaluation" in html
    assert 'data-images-total="0"' in html


def test_report_needs_metrics(tmp_path):
    run = fake_run(tmp_path / "run")
    (run / "metrics.json").unlink()
    with pytest.raises(ConfigError, match=re.escape(f"run folder {run} has no metrics.json")):
        write_report(run)
    with pytest.raises(ConfigError, match="does not exist"):
        write_report(tmp_path / "nowhere")
    (run / "metrics.json").write_text("[1, 2")
    with pytest.raises(ConfigError, match="metrics.json is not valid JSON"):
        write_report(run)
    assert not (run / "report.html").exists()
    assert [p.name for p in run.iterdir() if p.name.endswith(".tmp")] == []


def _png(path, color):
    Image.new("RGB", (8, 6), color).save(path)


def test_report_of_application_folders(tmp_path):
    """A folder of datadistill nas / continual / federated (no metrics.json) gets one section per app
    with its markdown summary, its figure and its settings; an app next to a run adds its section."""
    apps = tmp_path / "apps"
    apps.mkdir()
    (apps / "nas.json").write_text(json.dumps({"settings": {"workers": 2, "real": {"epochs": 1}}}))
    (apps / "nas.md").write_text("| candidate | rank |\n|---|---|\n| convnet-d3 <b> | 1 |\n")
    _png(apps / "nas.png", "red")
    (apps / "federated.json").write_text(json.dumps({"settings": {"clients": 20}}))
    html = render_report(apps)
    assert "Architecture search proxy" in html and "FedD3 against FedAvg" in html and "Continual" not in html
    assert "convnet-d3 &lt;b&gt;" in html  # the markdown is shown as escaped text
    assert html.count("<img ") == 1 and "No federated.png in this folder." in html
    assert "real.epochs" in html and "clients" in html
    assert "Other figures" not in html  # nas.png is the section's own figure
    run = fake_run(tmp_path / "run")
    (run / "continual.json").write_text(json.dumps({"settings": {"steps": 5}}))
    with_app = render_report(run)
    assert "Continual learning" in with_app and "Evaluation" in with_app
    (apps / "nas.json").write_text("{broken")
    (apps / "federated.json").unlink()
    assert "nas.json could not be read" in render_report(apps)
    (apps / "nas.json").unlink()
    with pytest.raises(ConfigError, match="no metrics.json .* and no nas.json, continual.json, federated.json"):
        write_report(apps)


# ------------------------------------------------------------------------------------ in Chromium


@pytest.fixture(scope="module")
def chromium():
    exe = os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        pytest.fail("Chromium is not installed, and the report tests open the report in headless Chromium: install "
                    "Debian's package (apt-get install --no-install-recommends chromium; scripts/setup.sh does it "
                    "when run as root) or point $CHROMIUM at a Chromium binary", pytrace=False)
    return exe


CHROMIUM_TIMEOUT = 60


def run_chromium(exe, profile, url, *args):
    cmd = [exe, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
           "--disable-extensions", f"--user-data-dir={profile}", "--virtual-time-budget=5000", *args, url]
    # its own session, so a hung browser is killed with all its helper processes
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=CHROMIUM_TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        pytest.fail(f"chromium did not finish within {CHROMIUM_TIMEOUT} s on {url} (a blocking dialog or a "
                    f"script that never ends?)", pytrace=False)
    assert proc.returncode == 0, f"chromium exited with {proc.returncode}: {stderr[-3000:]}"
    return stdout


def test_report_in_chromium_dom(report, chromium, tmp_path):
    dom = run_chromium(chromium, tmp_path / "profile", report.as_uri(), "--dump-dom")
    body = re.search(r"<body[^>]*>", dom).group(0)
    assert f'data-images-total="{N_IMAGES}"' in body, body
    assert f'data-images-loaded="{N_IMAGES}"' in body, body  # the load handler ran and every image decoded
    t = tables(dom)
    assert [row[1] for row in t["evaluation"]] == ["convnet", "convnet", "convnet", "convnet_bn"]
    assert [row[0] for row in t["cost"]] == ["convnet", "convnet_bn"]
    assert dict(t["config"])["method_args.comment"] == "<script>alert('x')</script> & co"


def test_report_in_chromium_screenshot(report, chromium, tmp_path):
    shot = tmp_path / "shot.png"
    run_chromium(chromium, tmp_path / "profile", report.as_uri(), f"--screenshot={shot}", "--window-size=1200,2000",
                 "--hide-scrollbars", "--force-color-profile=srgb")
    with Image.open(shot) as img:
        assert img.size == (1200, 2000)
        rgb = img.convert("RGB")
    colours = rgb.getcolors(maxcolors=1 << 20)
    assert len(colours) > 100, f"only {len(colours)} colours: the page did not render"
    red = sum(n for n, c in colours if c == RED)
    # the pure red synthetic.png is drawn whole (pixelated, at its natural size); nothing else is pure red
    assert red >= RED_SIZE[0] * RED_SIZE[1], f"{red} pure red pixels, expected the {RED_SIZE} synthetic grid"
