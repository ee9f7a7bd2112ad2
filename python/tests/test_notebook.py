"""A notebook-shaped check: a report's _repr_html_, put into an output cell as Jupyter puts it (innerHTML of
a div), renders in headless Chromium: the report's page loads in its frame with no console message, shows
its answer, and fits the cell's width."""

import json
import os
import shutil
import subprocess
import tempfile

import numpy as np
import pytest

import trainrr
from trainrr import layers

BROWSER = next((b for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)), None)

CELL = """<!doctype html><html><head><meta charset="utf-8"><style>body{font-family:sans-serif;margin:0}
h1{color:#123456}</style></head><body><h1 id="notebook">A notebook</h1><pre id="out">not rendered</pre>
<div id="cell" class="output_html" style="width:WIDTHpx"></div>
<script>
var cell = document.getElementById('cell');
cell.innerHTML = REPR;
var frame = cell.querySelector('iframe');
frame.addEventListener('load', function () {
  var d = frame.contentDocument;
  var notebook = getComputedStyle(document.getElementById('notebook')).color;
  document.getElementById('out').textContent = JSON.stringify({
    title: d.title, answer: d.querySelector('h1') ? d.querySelector('h1').textContent : null,
    sections: d.querySelectorAll('section').length, ended: d.querySelector('main') !== null,
    scrollWidth: d.documentElement.scrollWidth, clientWidth: d.documentElement.clientWidth,
    notebookHeading: notebook});
});
</script></body></html>"""


def render(report, width, folder):
    page = os.path.join(folder, f"cell-{width}.html")
    with open(page, "w", encoding="utf-8") as f:
        f.write(CELL.replace("WIDTH", str(width)).replace("REPR", json.dumps(report._repr_html_())))
    profile = tempfile.mkdtemp(dir=folder)
    p = subprocess.run([BROWSER, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                        "--disable-background-networking", "--disable-component-update", "--disable-sync",
                        "--disable-extensions", f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0",
                        "--allow-file-access-from-files", "--window-size=1400,1800", "--dump-dom",
                        f"file://{page}"], capture_output=True, text=True, timeout=120)
    console = [line for line in p.stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line]
    out = p.stdout.split('<pre id="out">', 1)[1].split("</pre>", 1)[0] if '<pre id="out">' in p.stdout else ""
    return out, console


def runs(folder):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 4)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.float32)
    model = trainrr.Sequential([layers.Dense(4, activation="relu"), layers.Dense(1, activation="sigmoid")])
    model.compile(loss="binary_crossentropy", metrics=["accuracy"])
    model.fit(x, y, epochs=2, verbose=0, validation_split=0.25,
              record=trainrr.record(os.path.join(folder, "run.trr"), level="layer"))
    return {"reproduced": trainrr.replay(os.path.join(folder, "run.trr")),
            # unseeded: a replay that forces nothing draws another seed
            "diverged": trainrr.replay(os.path.join(folder, "run.trr"), force="none")}


@pytest.mark.skipif(BROWSER is None, reason="no Chromium (apt-get install chromium)")
def test_repr_html_renders_in_a_notebook_cell(tmp_path):
    for status, report in runs(str(tmp_path)).items():
        assert report.status == status
        html = report._repr_html_()
        assert html.startswith("<iframe srcdoc=") and "<script" not in report.html().lower()
        for width in (1000, 700):
            out, console = render(report, width, str(tmp_path))
            assert not console, console
            assert out.startswith("{"), f"{status} at {width} px: the frame did not load: {out!r}"
            facts = json.loads(out.replace("&quot;", '"'))
            assert facts["title"] == f"trainrr replay: {status}"
            assert facts["ended"] and facts["sections"] >= 3
            assert facts["answer"], facts
            assert facts["scrollWidth"] <= facts["clientWidth"], f"{status} at {width} px scrolls sideways: {facts}"
            # The report's style stays in its frame: the notebook's heading keeps its own colour.
            assert facts["notebookHeading"] == "rgb(18, 52, 86)"
