"""`visreward report RUN_DIR`: one self-contained HTML page of a demo run (no external files).

The table, image grids (target examples beside base, Best-of-16 and the last SFT and DPO
rounds for the same prompts and seeds), the curves (Best-of-N, target-set size, rounds), the
reward's scores on held-out target vs base samples, and the probes. Charts are inline SVG and images inline PNG, so
the page can be mailed or archived as one file.
"""

from __future__ import annotations

import base64
import dataclasses
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
from ..evaluation.metrics import moved_toward
from ..io.images import tensor_to_pil
from .charts import YAxis, histogram, line_chart, mean_and_spread
from .clip_judge import JUDGED, LABELS


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


ACCURACY = YAxis("digit accuracy", 0.0, 1.0, "accuracy starts at 0", bounds=(0.0, 1.0))


def _toward_axis(measure: str, why: str = "") -> YAxis:
    return YAxis("moved toward target", 0.0, 1.0, f"0 is the base's {measure}, 1 the target's{why}",
                 {"base": 0.0, "target": 1.0})


def _log2(n: str) -> float:
    return math.log2(int(n))


def _power_of_two(x: float) -> str:
    return f"{2 ** x:g}"


def _curves(metrics: dict) -> list[str]:
    """Best-of-N by N, the reward by target-set size, the rounds, and GRPO's steps, each over the seeds."""
    rows, best_of, sizes = metrics["rows"], metrics["best_of_n"], metrics["target_sizes"]
    gap = metrics["reference"]["target_ink"] - rows["base"]["ink"][0]
    charts = [line_chart({"Best-of-N": [(_log2(n), *v[key]) for n, v in best_of.items()]}, f"Best-of-N: {title}",
                         "N (log scale)", axis, _power_of_two)
              for key, title, axis in (("toward_target", "ink mass, moved toward the target", _toward_axis("ink mass")),
                                       ("accuracy", "digit accuracy", ACCURACY))]
    charts.append(line_chart({"reward model": [(int(size), *v["heldout_auc"]) for size, v in sizes.items()]},
                             "target-set size: held-out AUC", "target images",
                             YAxis("held-out AUC", 0.5, 1.0, "0.5 is chance", bounds=(0.0, 1.0))))
    charts.append(line_chart({"Best-of-16": [(int(size), *v["best_of_16_ink_gain"]) for size, v in sizes.items()]},
                             "target-set size: Best-of-16 ink gain", "target images",
                             YAxis("ink mass gained", 0.0, gap, "0 is no gain; the line is the base's gap to the target",
                                   {"target": gap})))
    charts += [_rounds_chart(rows, "toward_target", "ink mass", _toward_axis("ink mass")),
               _rounds_chart(rows, "accuracy", "digit accuracy", ACCURACY)]
    return charts + _grpo_charts(metrics["per_seed"], ("ink", "ink mass", metrics["reference"]["target_ink"]),
                                 ("accuracy", "digit accuracy"))


def _grpo_charts(per_seed: list[dict], look: tuple[str, str, float], content: tuple[str, str]) -> list[str]:
    """GRPO's training samples by step, over the seeds: how far the look (key, name, the target's value) moved from
    the seed's base toward the target, and the content's measure (key, name)."""
    runs = [run for run in per_seed if run.get("grpo")]
    if not runs:
        return []
    (key, measure, target), (content_key, content_name) = look, content
    toward = mean_and_spread([[(row["step"], moved_toward(row[key], run["rows"]["base"][key], target))
                               for row in run["grpo"]["curve"]] for run in runs])
    kept = mean_and_spread([[(row["step"], row[content_key]) for row in run["grpo"]["curve"]] for run in runs])
    sampler = (f" (the base of the table, sampled deterministically; GRPO's training samples come from its stochastic "
               f"sampler, whose {measure} can sit apart from those)")
    return [line_chart({"GRPO": toward}, f"GRPO: {measure} of each step's samples, moved toward the target", "step",
                       _toward_axis(measure, sampler)),
            line_chart({"GRPO": kept}, f"GRPO: {content_name} of each step's samples", "step",
                       dataclasses.replace(ACCURACY, label=content_name))]


def _rounds_chart(rows: dict, key: str, measure: str, axis: YAxis) -> str:
    """One measure over the SFT and DPO rounds, round 0 being the base row."""
    series = {method: [(0, *rows["base"][key])] + [(int(name.split()[-1]), *r[key]) for name, r in rows.items()
                                                    if name.startswith(f"{method} round")] for method in ("SFT", "DPO")}
    moved = ", moved toward the target" if key == "toward_target" else ""
    return line_chart(series, f"rounds: {measure}{moved}", "round (0 = base)", axis)


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
    """A whole HTML page. Its script records, for a browser test, how many images loaded, how many of them the
    browser decodes as animations (WebCodecs' ImageDecoder frame count), and how many chart labels fall outside
    their chart."""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }}
table {{ border-collapse: collapse; margin: 1em 0; }} td, th {{ border: 1px solid #ccc; padding: 4px 10px; text-align: right; }}
td:first-child, th:first-child {{ text-align: left; }} figure {{ display: inline-block; margin: 0 1em 1em 0; vertical-align: top; }}
img {{ image-rendering: pixelated; border: 1px solid #ddd; }} svg text {{ font-size: 11px; }}
figure.chart figcaption {{ max-width: 440px; }}
.key {{ margin-right: 1em; white-space: nowrap; }} .key span {{ display: inline-block; width: 1.6em; height: 0.5em; margin-right: 0.3em; }}
</style></head>
<body>
{body}
<script>
window.addEventListener("load", async () => {{
  const images = [...document.images];
  document.body.dataset.imagesTotal = images.length;
  document.body.dataset.imagesLoaded = images.filter(i => i.complete && i.naturalWidth > 0).length;
  const outside = svg => {{
    const box = svg.getBoundingClientRect();
    return [...svg.querySelectorAll("text")].map(text => text.getBoundingClientRect()).filter(r =>
      r.left < box.left - 1 || r.right > box.right + 1 || r.top < box.top - 1 || r.bottom > box.bottom + 1).length;
  }};
  document.body.dataset.chartTextOutside = [...document.querySelectorAll("svg")].map(outside).reduce((a, b) => a + b, 0);
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
    speed = LABELS["speed"].split(",")[0]
    charts = [_rounds_chart(rows, "toward_target", speed, _toward_axis(speed)),
              _rounds_chart(rows, "accuracy", LABELS["accuracy"], ACCURACY)]
    charts += _grpo_charts(metrics["per_seed"], ("speed", speed, reference["target_speed"]),
                           ("accuracy", LABELS["accuracy"]))
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
    """Best-of-N's gold by N, one factor at a time; the proxies' own scores; GRPO's curves, over the seeds."""
    proxies, oracle = metrics["proxies"], metrics["oracle_best_of_n"]
    gold = YAxis("gold", -1.0, 2.0, "the gold's whole range is -1 to 2", {"base (N = 1)": oracle["1"][0]})
    charts = []
    for group, names in JUDGE_GROUPS.items():
        series = {name: [(_log2(n), *v["gold"]) for n, v in proxies[name]["best_of_n"].items()]
                  for name in names if name in proxies}
        if series:
            series["the gold itself"] = [(_log2(n), *v) for n, v in oracle.items()]
            charts.append(line_chart(series, f"Best-of-N, {group}: gold of the pick", "N (log scale)", gold,
                                     _power_of_two))
    yes_no = {name: [(_log2(n), *v["proxy"]) for n, v in row["best_of_n"].items()]
              for name, row in proxies.items() if name != "bradley-terry"}
    charts.append(line_chart(yes_no, "Best-of-N: the proxy's own score of the pick", "N (log scale)",
                             YAxis("proxy P(yes)", 0.0, 1.0, "a probability", bounds=(0.0, 1.0)), _power_of_two))
    return charts + _rl_charts(metrics.get("rl_curves", {}), gold)


def _rl_charts(curves: dict, gold: YAxis) -> list[str]:
    """GRPO against each proxy: the gold, the proxy's gain and its within-group std by step, and gold against KL."""
    if not curves:
        return []

    def points(curve: dict, key: str, shift: float = 0.0) -> list:
        spread = curve.get(f"{key}_sd", [0.0] * len(curve[key]))
        return [(step, value - shift, sd) for step, value, sd in zip(curve["step"], curve[key], spread)]

    title = "of each step's samples (5-step mean; mean over seeds)"
    return [
        line_chart({name: points(c, "gold") for name, c in curves.items()}, f"GRPO: gold {title}", "step", gold),
        line_chart({name: points(c, "proxy", shift=c["proxy"][0]) for name, c in curves.items()},
                   f"GRPO: proxy reward gained {title}", "step",
                   YAxis("proxy reward gained", 0.0, 0.0, "0 is the first logged step's reward", {"start": 0.0})),
        line_chart({name: points(c, "proxy_group_std") for name, c in curves.items()},
                   f"GRPO: proxy's within-group std {title}", "step",
                   YAxis("proxy's within-group std", 0.0, 0.0, "a std starts at 0")),
        line_chart({name: [(kl, value) for kl, value in zip(c["kl"], c["gold"])] for name, c in curves.items()},
                   "GRPO: gold against KL to the base (5-step means; mean over seeds)", "KL per step", gold)]


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
