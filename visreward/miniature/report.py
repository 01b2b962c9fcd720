"""`visreward report RUN_DIR`: one self-contained HTML page of a demo run (no external files).

The table, image grids (target examples beside base, Best-of-16 and the last SFT and DPO
rounds for the same prompts and seeds), the curves (Best-of-N, target-set size, rounds), the
reward's scores on held-out target vs base samples, and the probes. Charts are inline SVG and images inline PNG, so
the page can be mailed or archived as one file.
"""

from __future__ import annotations

import base64
import html
import json
import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..core.atomic import atomic_dir, write_text
from ..core.errors import VisrewardError
from ..core.options import ReportConfig  # noqa: F401 - re-exported beside write_report
from ..io.images import tensor_to_pil
from .clip_judge import JUDGED, LABELS

COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e"]


def grid_image(images: torch.Tensor, columns: int, scale: int = 4) -> Image.Image:
    """[B,3,h,w] in [0,1] -> one grid image, each image upscaled `scale`x without smoothing."""
    tiles = [tensor_to_pil(image) for image in images]
    width, height = tiles[0].width * scale, tiles[0].height * scale
    rows = (len(tiles) + columns - 1) // columns
    grid = Image.new("RGB", (columns * (width + 2), rows * (height + 2)), "white")
    for i, tile in enumerate(tiles):
        grid.paste(tile.resize((width, height), Image.NEAREST), ((i % columns) * (width + 2), (i // columns) * (height + 2)))
    return grid


def save_grid(images: torch.Tensor, columns: int, path: Path, scale: int = 4) -> None:
    grid_image(images, columns, scale).save(path)


def save_clip_grid(clips: torch.Tensor, columns: int, path: Path, scale: int = 4, fps: float = 8.0) -> None:
    """[B,T,3,h,w] in [0,1] -> one looping animated grid (GIF), frame t showing every clip's frame t."""
    from ..io.videos import write_video

    write_video(path, np.stack([np.asarray(grid_image(clips[:, t], columns, scale)) for t in range(clips.shape[1])]), fps)


def _image_tag(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    mime = "image/gif" if path.suffix == ".gif" else "image/png"
    return f'<img src="data:{mime};base64,{data}" alt="{html.escape(alt)}">'


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


def save_sample_grids(samples: dict[str, torch.Tensor], target: torch.Tensor, per_prompt: int, assets: Path) -> None:
    """Up to 4 samples of each of 10 prompts per grid (one prompt per column), and the target examples (4 x 10)."""
    shown = [j + d * per_prompt for j in range(min(4, per_prompt)) for d in range(10)]
    with atomic_dir(assets) as tmp:
        save_grid(target, 10, tmp / "grid-target.png", scale=8)
        for name, images in samples.items():
            save_grid(images[shown], 10, tmp / f"grid-{_slug(name)}.png", scale=8)


def save_clip_grids(samples: dict[str, torch.Tensor], target: torch.Tensor, assets: Path) -> None:
    """Animated grids: each row's clips (one prompt per column) and the target examples."""
    with atomic_dir(assets) as tmp:
        save_clip_grid(target, 10, tmp / "grid-target.gif", scale=6)
        for name, clips in samples.items():
            save_clip_grid(clips, 10, tmp / f"grid-{_slug(name)}.gif", scale=6)


def _slug(name: str) -> str:
    return name.lower().replace(" ", "-")


def _cell(value) -> str:
    return f"{value[0]:.3f} &plusmn; {value[1]:.3f}"


def _table_html(rows: dict, reference: dict) -> str:
    columns = [("ink", f"ink mass (target {reference['target_ink']:.2f})"), ("toward_target", "moved toward target"),
               ("accuracy", "digit accuracy &uarr;"), ("frechet", "Fr&eacute;chet distance to held-out target (pixels) &darr;"),
               ("diversity", "diversity (pixels)"),
               ("nearest_target", f"nearest-target distance (held-out target: {reference['heldout_nearest']:.2f})")]
    head = "".join(f"<th>{label}</th>" for _, label in columns)
    body = "".join(f"<tr><td>{html.escape(name)}</td>" + "".join(f"<td>{_cell(r[key])}</td>" for key, _ in columns) + "</tr>"
                   for name, r in rows.items())
    return f"<table><thead><tr><th>generator</th>{head}</tr></thead><tbody>{body}</tbody></table>"


def _probe_table(probes: dict) -> str:
    models = list(probes)
    names = list(probes[models[0]])
    head = "".join(f"<th>{html.escape(m)}</th>" for m in models)
    body = "".join(f"<tr><td>{html.escape(n)}</td>" + "".join(f"<td>{probes[m][n][0]:.1f}</td>" for m in models) + "</tr>"
                   for n in names)
    return f"<table><thead><tr><th>probe</th>{head}</tr></thead><tbody>{body}</tbody></table>"


def _curves(metrics: dict) -> list[str]:
    rows, best_of, sizes = metrics["rows"], metrics["best_of_n"], metrics["target_sizes"]
    charts = []
    for key, label in (("ink", "ink mass"), ("accuracy", "digit accuracy")):
        charts.append(line_chart({"Best-of-N": [(math.log2(int(n)), v[key][0]) for n, v in best_of.items()],
                                  "target": [(0, metrics["reference"]["target_ink"]), (5, metrics["reference"]["target_ink"])]}
                                 if key == "ink" else {"Best-of-N": [(math.log2(int(n)), v[key][0]) for n, v in best_of.items()]},
                                 f"Best-of-N: {label}", "log2 N", label))
    for key, label in (("heldout_auc", "held-out AUC"), ("best_of_16_ink_gain", "Best-of-16 ink gain")):
        charts.append(line_chart({label: [(int(size), v[key][0]) for size, v in sizes.items()]},
                                 f"target-set size: {label}", "target images", label))
    for key, label in (("ink", "ink mass"), ("accuracy", "digit accuracy")):
        charts.append(_rounds_chart(rows, key, label))
    return charts + _grpo_charts(metrics["per_seed"], {"ink": "ink mass", "accuracy": "digit accuracy"},
                                 ("ink", metrics["reference"]["target_ink"]))


def _grpo_charts(per_seed: list[dict], measures: dict[str, str], target: tuple[str, float]) -> list[str]:
    """One chart per judged measure of GRPO's training samples against its step, one curve per seed (the spread
    shows), with the target's value as a line on the target's measure."""
    runs = [run for run in per_seed if run.get("grpo")]
    charts = []
    for key, label in measures.items() if runs else ():
        series = {f"seed {run['seed']}": [(row["step"], row[key]) for row in run["grpo"]["curve"]] for run in runs}
        if key == target[0]:
            steps = max(step for curve in series.values() for step, _ in curve)
            series["target"] = [(1, target[1]), (steps, target[1])]
        charts.append(line_chart(series, f"GRPO: {label} of each step's samples", "step", label))
    return charts


def _rounds_chart(rows: dict, key: str, label: str) -> str:
    """One measure over the SFT and DPO rounds, round 0 being the base row."""
    series = {method: [(0, rows["base"][key][0])] + [(int(name.split()[-1]), r[key][0]) for name, r in rows.items()
                                                       if name.startswith(f"{method} round")] for method in ("SFT", "DPO")}
    return line_chart(series, f"rounds: {label}", "round (0 = base)", label)


def _metrics(run: Path) -> dict:
    try:
        return json.loads((run / "demo_metrics.json").read_text())
    except FileNotFoundError:
        raise VisrewardError(f"{run}: no demo_metrics.json (run `visreward demo --output {run}` first)") from None


def write_report(run: str | Path) -> Path:
    """report.html of a demo run (of `demo --video` too)."""
    run = Path(run)
    metrics = _metrics(run)
    if metrics["config"].get("video"):
        return _write_video_report(run, metrics)
    if metrics["config"].get("judges"):
        return _write_judges_report(run, metrics)
    assets = run / "assets"
    last = max(int(name.split()[-1]) for name in metrics["rows"] if " round " in name)
    shown = ["target", "base", "Best-of-16", f"SFT round {last}", f"DPO round {last}", "GRPO"]
    grids = "".join(f'<figure>{_image_tag(assets / f"grid-{_slug(name)}.png", name)}<figcaption>{html.escape(name)}'
                    f'{" (training examples)" if name == "target" else ""}</figcaption></figure>'
                    for name in shown if (assets / f"grid-{_slug(name)}.png").exists())
    first = metrics["per_seed"][0]
    config = metrics["config"]
    body = f"""<h1>visreward: GAN-RM in miniature</h1>
<p>The bundled class-conditional diffusion generator, trained on all real 8&times;8 training digits, draws <em>bold</em>
digits (ink mass in the top {config["look"]:.0%} of their class) only sometimes. GAN-RM reward models learn that look from
{config["n_target"]} target digits against the generator's own samples; Best-of-N, SFT and DPO rounds use them.
Judges share nothing with the rewards: {html.escape(metrics["reference"]["judges"])}. Every number is the mean &plusmn; sd over
{len(metrics["per_seed"])} seed(s). Run time {metrics["seconds"]:.0f}s.</p>
<h2>Results</h2>{_table_html(metrics["rows"], metrics["reference"])}
<h2>Samples (same prompts and seeds; 4 per digit, one digit per column)</h2>{grids}
<h2>Curves</h2>{"".join(_curves(metrics))}
<h2>The round-1 reward model</h2>
<p>Held-out AUC (held-out bold digits vs fresh base samples; neither was used for training or early stopping):
{metrics["reward_heldout_auc"][0]:.3f} &plusmn; {metrics["reward_heldout_auc"][1]:.3f}.</p>
{histogram({"held-out target": first["scores"]["heldout_target"], "base samples": first["scores"]["base"]}, "reward: held-out target vs base", "reward (logit)")}
<h2>Probes: percentile among held-out target scores (below 5 is safe)</h2>{_probe_table(metrics["probes"])}
"""
    page = _page("visreward demo report", body)
    write_text(run / "report.html", page)
    return run / "report.html"


def _page(title: str, body: str) -> str:
    """A whole HTML page. Its script records, for a browser test, how many images loaded and how many of
    them the browser decodes as animations (WebCodecs' ImageDecoder frame count)."""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }}
table {{ border-collapse: collapse; margin: 1em 0; }} td, th {{ border: 1px solid #ccc; padding: 4px 10px; text-align: right; }}
td:first-child, th:first-child {{ text-align: left; }} figure {{ display: inline-block; margin: 0 1em 1em 0; vertical-align: top; }}
img {{ image-rendering: pixelated; border: 1px solid #ddd; }} svg text {{ font-size: 11px; }}
</style></head>
<body>
{body}
<script>
window.addEventListener("load", async () => {{
  const images = [...document.images];
  document.body.dataset.imagesTotal = images.length;
  document.body.dataset.imagesLoaded = images.filter(i => i.complete && i.naturalWidth > 0).length;
  const frameCounts = await Promise.all(images.filter(i => i.src.startsWith("data:image/gif")).map(async image => {{
    const decoder = new ImageDecoder({{data: (await fetch(image.src)).body, type: "image/gif"}});
    await decoder.completed;
    return decoder.tracks.selectedTrack.frameCount;
  }}));
  document.body.dataset.imagesAnimated = frameCounts.filter(count => count > 1).length;
}});
</script>
</body></html>
"""


def _write_video_report(run: Path, metrics: dict) -> Path:
    """The HTML report of a `demo --video` run: its table, animated previews, round curves and the reward's scores."""
    config, reference, rows = metrics["config"], metrics["reference"], metrics["rows"]
    head = "".join(f"<th>{html.escape(LABELS[key])}</th>" for key in JUDGED)
    table = "".join(f"<tr><td>{html.escape(name)}</td>" + "".join(f"<td>{_cell(r[key])}</td>" for key in JUDGED) + "</tr>"
                    for name, r in rows.items())
    held = reference["heldout_target"]
    table += "<tr><td>held-out slow clips (real)</td>" + "".join(
        f"<td>{held[key]:.3f}</td>" if key in held else "<td>1</td>" for key in JUDGED) + "</tr>"
    previews = "".join(f'<figure>{_image_tag(run / "assets" / f"grid-{_slug(name)}.gif", name)}<figcaption>'
                       f'{html.escape(name)}{" (training examples)" if name == "target" else ""}</figcaption></figure>'
                       for name in ["target", *rows] if (run / "assets" / f"grid-{_slug(name)}.gif").exists())
    charts = [_rounds_chart(rows, key, LABELS[key]) for key in ("speed", "accuracy")]
    charts += _grpo_charts(metrics["per_seed"], {key: LABELS[key] for key in ("speed", "accuracy")},
                           ("speed", reference["target_speed"]))
    first = metrics["per_seed"][0]
    body = f"""<h1>visreward: GAN-RM in miniature, video</h1>
<p>The bundled moving-digits generator (a class-conditional diffusion model over 8-frame 16&times;16 clips) learnt from
real digits moving right, left, down or up at speeds from 0.25 to 1 pixel a frame; it draws <em>slow, steady</em> clips
(speed in the slowest {config["look"]:.0%}) only sometimes. GAN-RM video reward models (frame features pooled over time) learn
that look from {config["n_target"]} target clips against the generator's own clips; Best-of-N, SFT and DPO rounds use
them, and GRPO (online RL) the round-1 DPO reward model. Judges share nothing with the rewards: {html.escape(reference["judges"])}. Every number is the mean &plusmn; sd
over {len(metrics["per_seed"])} seed(s). Run time {metrics["seconds"]:.0f}s.</p>
<h2>Results</h2><table><thead><tr><th>generator</th>{head}</tr></thead><tbody>{table}</tbody></table>
<h2>Clips (same prompts and seeds; one prompt per column, looping)</h2>{previews}
<h2>Rounds and GRPO</h2>{"".join(charts)}
<h2>The round-1 reward model</h2>
<p>Held-out AUC (held-out slow clips vs fresh base clips; neither was used for training or early stopping):
{metrics["reward_heldout_auc"][0]:.3f} &plusmn; {metrics["reward_heldout_auc"][1]:.3f}.</p>
{histogram({"held-out target": first["scores"]["heldout_target"], "base clips": first["scores"]["base"]},
           "reward: held-out target vs base", "reward (logit)")}
"""
    write_text(run / "report.html", _page("visreward video demo report", body))
    return run / "report.html"


# which proxies each Best-of-N chart compares: one factor at a time against `generative`
JUDGE_GROUPS = {"paradigm and mode": ("generative", "bradley-terry", "pointwise"),
                "context": ("generative", "no-instruction", "target-reference", "cot"),
                "size": ("1x", "generative", "16x"),
                "data and pretraining": ("fewer-pairs", "generative", "more-pairs", "not-pretrained")}


def _judges_charts(metrics: dict) -> list[str]:
    proxies, oracle = metrics["proxies"], metrics["oracle_best_of_n"]
    charts = []
    for group, names in JUDGE_GROUPS.items():
        series = {name: [(math.log2(int(n)), v["gold"][0]) for n, v in proxies[name]["best_of_n"].items()]
                  for name in names if name in proxies}
        if series:
            series["the gold itself"] = [(math.log2(int(n)), v[0]) for n, v in oracle.items()]
            charts.append(line_chart(series, f"Best-of-N, {group}: gold of the pick", "log2 N", "gold"))
    yes_no = {name: [(math.log2(int(n)), v["proxy"][0]) for n, v in row["best_of_n"].items()]
              for name, row in proxies.items() if name != "bradley-terry"}
    charts.append(line_chart(dict(list(yes_no.items())[:5]), "Best-of-N: the proxy's own score of the pick", "log2 N",
                             "proxy P(yes)"))
    rl = metrics.get("rl_curves", {})
    for key, label in (("gold", "gold"), ("proxy", "proxy reward"), ("proxy_group_std", "proxy's within-group std")):
        if rl:
            charts.append(line_chart({name: list(zip(curve["step"], curve[key])) for name, curve in rl.items()},
                                     f"GRPO: {label} of each step's samples (5-step mean, seed mean)", "step", label))
    if rl:
        charts.append(line_chart({name: list(zip(curve["kl"], curve["gold"])) for name, curve in rl.items()},
                                 "GRPO: gold against KL to the base (5-step means)", "KL per step", "gold"))
    return charts


def _write_judges_report(run: Path, metrics: dict) -> Path:
    """The HTML report of a `demo --judges` run: the proxies' table, Best-of-N and GRPO curves, verdicts, samples."""
    config = metrics["config"]
    rows = "".join(
        f"<tr><td>{html.escape(name)}</td><td>{_cell(row['heldout_accuracy'])}</td>"
        + "".join(f"<td>{_cell(row['best_of_n'][n]['gold'])}</td>" for n in ("1", "8", "64"))
        + (f"<td>{_cell(row['rl']['gold_peak'])}</td><td>{_cell(row['rl']['gold_end'])}</td>"
           f"<td>{', '.join('none' if s is None else str(s) for s in row['rl']['overoptimisation_onsets'])}</td>"
           if "rl" in row else "<td></td><td></td><td></td>") + "</tr>"
        for name, row in metrics["proxies"].items())
    oracle = metrics["oracle_best_of_n"]
    rows += ("<tr><td>the gold itself</td><td>1</td>" + "".join(f"<td>{_cell(oracle[n])}</td>" for n in ("1", "8", "64"))
             + "<td></td><td></td><td></td></tr>")
    verdicts = "".join(f"<li>{html.escape(claim)}: <strong>{html.escape(verdict)}</strong></li>"
                       for claim, verdict in metrics["claims"].items())
    control = metrics.get("rl_control")
    if control:
        verdicts += (f"<li>GRPO's control, a random reward: gold {_cell(control['gold_start'])} at the start, "
                     f"{_cell(control['gold_end'])} at the end</li>")
    named = metrics["per_seed"][0].get("rl_samples", {})
    grids = "".join(f'<figure>{_image_tag(run / "assets" / f"grid-{label}.png", label)}<figcaption>{html.escape(caption)}'
                    f'</figcaption></figure>' for label, caption in (
                        ("base", "base"), ("best", f"GRPO against {named.get('best')}: the highest gold at the end"),
                        ("most-overoptimised", f"GRPO against {named.get('most_overoptimised')}: the furthest fall "
                                               "from its gold's peak"))
                    if (run / "assets" / f"grid-{label}.png").exists())
    pretraining = ", ".join(f"{size}: {m['parameters']:,} parameters, reads {m['digit_accuracy']:.3f} of held-out digits"
                            for size, m in metrics["pretraining"].items())
    body = f"""<h1>visreward: RewardDance in miniature</h1>
<p>A gold preference (the held-out digit classifier's margin for the prompted digit plus closeness to the bold target
look) plays the human rater. Proxy VLM judges, each pretrained from scratch on captioned real digits ({html.escape(pretraining)}),
learn from {config["pairs"]} Bradley-Terry labels of pairs of the bundled generator's samples (agreeing with the gold's sign
{metrics["label_agreement"][0]:.3f} of the time); each differs from <code>generative</code> in one thing. Every number is
measured on samples no proxy trained on, mean &plusmn; sd over {len(metrics["per_seed"])} seed(s). Run time
{metrics["seconds"]:.0f}s.</p>
<h2>Proxies</h2><table><thead><tr><th>proxy</th><th>held-out accuracy (gold's sign)</th><th>best-of-1 gold</th>
<th>best-of-8 gold</th><th>best-of-64 gold</th><th>GRPO: peak gold</th><th>GRPO: final gold</th>
<th>overoptimisation from step</th></tr></thead><tbody>{rows}</tbody></table>
<h2>RewardDance's claims</h2><ul>{verdicts}</ul>
<h2>Curves</h2>{"".join(_judges_charts(metrics))}
<h2>Samples (4 per digit, the same seeds)</h2>{grids}
"""
    write_text(run / "report.html", _page("visreward RewardDance miniature report", body))
    return run / "report.html"
