"""`visreward report RUN_DIR`: one self-contained HTML page of a demo run (no external files).

The table, image grids (base vs Best-of-16 vs DPO for the same prompts and seeds; the
highest- and lowest-scored samples), score histograms of real vs generated digits, the
judge's ROC curve, and per-round curves. Charts are inline SVG and images inline PNG, so
the page can be mailed or archived as one file.
"""

from __future__ import annotations

import base64
import html
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .atomic import write_text
from .config import option
from .errors import VisrewardError
from .images import tensor_to_pil

COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e"]


@dataclass
class ReportConfig:
    run: str = option("demo_out", "a demo run folder (with demo_metrics.json)", positional=True)


def save_grid(images: torch.Tensor, columns: int, path: Path, scale: int = 4) -> None:
    """[B,3,h,w] in [0,1] -> one PNG grid, each image upscaled `scale`x without smoothing."""
    tiles = [tensor_to_pil(image) for image in images]
    width, height = tiles[0].width * scale, tiles[0].height * scale
    rows = (len(tiles) + columns - 1) // columns
    grid = Image.new("RGB", (columns * (width + 2), rows * (height + 2)), "white")
    for i, tile in enumerate(tiles):
        grid.paste(tile.resize((width, height), Image.NEAREST), ((i % columns) * (width + 2), (i // columns) * (height + 2)))
    grid.save(path)


def _image_tag(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<img src="data:image/png;base64,{data}" alt="{html.escape(alt)}">'


def _svg_frame(title: str, xlabel: str, ylabel: str, body: str, width: int = 420, height: int = 260) -> str:
    return (f'<figure><svg viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img">'
            f'<title>{html.escape(title)}</title>'
            f'<line x1="50" y1="{height - 40}" x2="{width - 10}" y2="{height - 40}" stroke="#444"/>'
            f'<line x1="50" y1="10" x2="50" y2="{height - 40}" stroke="#444"/>'
            f'<text x="{width / 2}" y="{height - 8}" text-anchor="middle">{html.escape(xlabel)}</text>'
            f'<text x="12" y="{height / 2}" transform="rotate(-90 12 {height / 2})" text-anchor="middle">{html.escape(ylabel)}</text>'
            f'{body}</svg><figcaption>{html.escape(title)}</figcaption></figure>')


def _scale(values, lo, hi, out_lo, out_hi):
    span = (hi - lo) or 1.0
    return [out_lo + (v - lo) / span * (out_hi - out_lo) for v in values]


def line_chart(series: dict[str, list[tuple[float, float]]], title: str, xlabel: str, ylabel: str) -> str:
    points = [p for values in series.values() for p in values]
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    body = []
    for i, (name, values) in enumerate(series.items()):
        px = _scale([p[0] for p in values], min(xs), max(xs), 60, 400)
        py = _scale([p[1] for p in values], min(ys), max(ys), 210, 20)
        colour = COLOURS[i % len(COLOURS)]
        body.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{" ".join(f"{x:.1f},{y:.1f}" for x, y in zip(px, py))}"/>')
        body += [f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{colour}"/>' for x, y in zip(px, py)]
        body.append(f'<text x="{60 + 110 * i}" y="14" fill="{colour}">{html.escape(name)}</text>')
    body.append(f'<text x="46" y="214" text-anchor="end">{min(ys):.3g}</text><text x="46" y="24" text-anchor="end">{max(ys):.3g}</text>')
    body.append(f'<text x="60" y="234">{min(xs):.3g}</text><text x="400" y="234" text-anchor="end">{max(xs):.3g}</text>')
    return _svg_frame(title, xlabel, ylabel, "".join(body))


def histogram(groups: dict[str, list[float]], title: str, xlabel: str, bins: int = 24) -> str:
    everything = [v for values in groups.values() for v in values]
    lo, hi = float(np.quantile(everything, 0.005)), float(np.quantile(everything, 0.995))
    edges = np.linspace(lo, hi, bins + 1)
    counts = {name: np.histogram(np.clip(values, lo, hi), bins=edges)[0] / max(1, len(values)) for name, values in groups.items()}
    top = max(c.max() for c in counts.values()) or 1.0
    width = 340 / bins
    body = []
    for i, (name, fractions) in enumerate(counts.items()):
        colour = COLOURS[i % len(COLOURS)]
        for j, fraction in enumerate(fractions):
            height = fraction / top * 190
            body.append(f'<rect x="{60 + j * width:.1f}" y="{220 - height:.1f}" width="{width:.1f}" height="{height:.1f}" '
                        f'fill="{colour}" fill-opacity="0.45"/>')
        body.append(f'<text x="{60 + 140 * i}" y="14" fill="{colour}">{html.escape(name)} ({len(groups[name])})</text>')
    body.append(f'<text x="60" y="234">{lo:.2f}</text><text x="400" y="234" text-anchor="end">{hi:.2f}</text>')
    return _svg_frame(title, xlabel, "fraction", "".join(body))


def _table_html(rows: list[dict]) -> str:
    cells = "".join(
        f"<tr><td>{html.escape(r['name'])}</td><td>{r['frechet_distance']:.2f}</td><td>{r['classifier_accuracy']:.3f}</td>"
        f"<td>{r['mean_reward']:+.3f}</td><td>{r['diversity']:.2f}</td></tr>" for r in rows)
    return ("<table><thead><tr><th>generator</th><th>Fr&eacute;chet distance &darr;</th><th>classifier accuracy &uarr;</th>"
            f"<th>mean reward</th><th>diversity</th></tr></thead><tbody>{cells}</tbody></table>")


def write_report(run: str | Path) -> Path:
    run = Path(run)
    try:
        metrics = json.loads((run / "demo_metrics.json").read_text())
    except FileNotFoundError:
        raise VisrewardError(f"{run}: no demo_metrics.json (run `visreward demo --output {run}` first)") from None
    assets = run / "assets"
    rows = metrics["rows"]
    by_name = {r["name"]: r for r in rows}
    grid_names = [("base", "base"), ("best-of-16", "Best-of-16")] + [
        (p.stem.removeprefix("grid-"), p.stem.removeprefix("grid-").replace("-", " ").upper().replace("ROUND", "round"))
        for p in sorted(assets.glob("grid-*-round-*.png"))]
    grids = "".join(f'<figure>{_image_tag(assets / f"grid-{key}.png", label)}<figcaption>{html.escape(label)}</figcaption></figure>'
                    for key, label in grid_names if (assets / f"grid-{key}.png").exists())
    roc = metrics["judge_on_evaluation_split"]["roc"]
    curves = []
    for metric, label in (("frechet_distance", "Fréchet distance"), ("classifier_accuracy", "classifier accuracy")):
        series = {}
        for method in ("SFT", "DPO"):
            points = [(0, by_name["base"][metric])] + [
                (int(name.split()[-1]), r[metric]) for name, r in by_name.items() if name.startswith(f"{method} round")]
            series[method] = points
        curves.append(line_chart(series, f"{label} per round", "round (0 = base)", label))
    series = {method.upper(): [(r["round"], r["rm_heldout"]["auc"]) for r in metrics["rounds"][method]]
              for method in ("sft", "dpo") if method in metrics["rounds"]}
    curves.append(line_chart(series, "reward model held-out AUC per round", "round", "AUC"))
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>visreward demo report</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }}
table {{ border-collapse: collapse; margin: 1em 0; }} td, th {{ border: 1px solid #ccc; padding: 4px 10px; text-align: right; }}
td:first-child, th:first-child {{ text-align: left; }} figure {{ display: inline-block; margin: 0 1em 1em 0; vertical-align: top; }}
img {{ image-rendering: pixelated; border: 1px solid #ddd; }} svg text {{ font-size: 11px; }}
</style></head>
<body>
<h1>visreward: GAN-RM in miniature</h1>
<p>Bundled class-conditional diffusion generator on real 8&times;8 digits. Reward models are GAN-RM heads on a frozen
{html.escape(metrics.get("encoder", "EfficientNet-Lite0"))} encoder, trained on 400 real target digits against the generator's
own samples. Every row is evaluated on the same prompts and seeds; mean reward is under a fixed judge ({html.escape(metrics["judge"])}).
Run time {metrics["seconds"]:.0f}s.</p>
<h2>Results</h2>{_table_html(rows)}
<h2>Samples (same prompts and seeds; 4 per digit, one digit per column)</h2>{grids}
<h2>Highest- and lowest-scored base samples</h2>
<figure>{_image_tag(assets / "highest-scored.png", "highest scored")}<figcaption>highest reward</figcaption></figure>
<figure>{_image_tag(assets / "lowest-scored.png", "lowest scored")}<figcaption>lowest reward</figcaption></figure>
<h2>The judge reward model</h2>
{histogram({"real (held-out)": metrics["histograms"]["real"], "generated (base)": metrics["histograms"]["generated"]}, "judge scores: real vs generated", "reward (logit)")}
{line_chart({"ROC": list(zip(roc["fpr"], roc["tpr"]))}, f"ROC, AUC {metrics['judge_on_evaluation_split']['auc']:.3f}", "false positive rate", "true positive rate")}
<h2>Per round</h2>{"".join(curves)}
<script>
window.addEventListener("load", () => {{
  const images = [...document.images];
  document.body.dataset.imagesTotal = images.length;
  document.body.dataset.imagesLoaded = images.filter(i => i.complete && i.naturalWidth > 0).length;
}});
</script>
</body></html>
"""
    write_text(run / "report.html", page)
    return run / "report.html"
