"""The recipe's one results page: every task and set of a model next to the ceilings (stage 8).

Inputs are what stages 7 and 8 write; a missing one is an error naming the file:

* ``<decode_root>/caption_to_audio_<set>/``: ``scores.json`` (``score_dir`` on ``wav.scp``),
  ``scores_vae.json`` when ``wav_vae.scp`` exists, ``heldout_loss.json``;
* ``<decode_root>/audio_to_caption_<set>/scores.json`` (caption metrics);
* ``<decode_root>/{audio_qa,text_only}_<set>/scores_understanding.json`` (accuracy per qtype + chance);
* ``<ceilings_root>/ceilings_<set>/{ground_truth,codec[,vae]}/scores.json``: the same audio metrics
  on the reference clips, their codec resynthesis and its VAE enhancement.

Writes the markdown page, PNGs in ``results_images/`` beside it (spectrograms of generations next
to their reference clips, a bar chart of the main audio metrics, model vs ceilings) and a few
sample wavs in ``results_samples/``.
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from ualm_tk.data.kaldi_files import read_kaldi_file

logger = logging.getLogger(__name__)

AUDIO_TASK = "caption_to_audio"
CAPTION_TASK = "audio_to_caption"
UNDERSTANDING_TASKS = ("audio_qa", "text_only")
KNOWN_TASKS = (AUDIO_TASK, CAPTION_TASK) + UNDERSTANDING_TASKS
CEILINGS = (("ground_truth", "ceiling: ground-truth test audio"),
            ("codec", "ceiling: codec resynthesis of the ground truth"),
            ("vae", "ceiling: codec resynthesis + VAE enhancement"))
# metric-name prefixes drawn in the bar chart, in this order
MAIN_METRICS = ("FD", "KL", "CLAP", "event_recall", "event_precision", "event_order_accuracy")


class ResultsInputError(FileNotFoundError):
    """A score file that stage 7 or 8 should have written is missing or unreadable."""


def _load_json(path: Path, what: str) -> Dict[str, Any]:
    if not path.is_file():
        raise ResultsInputError(f"{path} is missing ({what}); run stage 7/8 for it first")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ResultsInputError(f"{path}: not valid JSON ({e})") from None


@dataclass
class System:
    """One row group: a model's decode or a ceiling, with its audio scores and audio list."""

    label: str
    scores: Dict[str, Dict[str, Any]]
    wav_scp: Optional[Path] = None


@dataclass
class SetResults:
    name: str
    audio: List[System] = field(default_factory=list)  # models first, then ceilings
    heldout: List[Tuple[str, Dict[str, Any]]] = field(default_factory=list)
    captions: List[Tuple[str, Dict[str, Any]]] = field(default_factory=list)
    understanding: List[Tuple[str, str, Dict[str, Any]]] = field(default_factory=list)  # (model, task, scores)


def _model_label(decode_root: Path) -> str:
    return f"{decode_root.parent.name}/{decode_root.name}"


def collect(decode_roots: Sequence[Path], sets: Sequence[str], tasks: Sequence[str],
            ceilings_root: Optional[Path]) -> List[SetResults]:
    """Read every score file the tasks and sets call for; raise :class:`ResultsInputError` on a gap."""
    for t in tasks:
        if t not in KNOWN_TASKS:
            raise ValueError(f"unknown task {t!r}; known: {KNOWN_TASKS}")
    if not decode_roots:
        raise ValueError("no decode directories given")
    out = []
    for s in sets:
        res = SetResults(s)
        for root in decode_roots:
            root = Path(root)
            if not root.is_dir():
                raise ResultsInputError(f"decode directory {root} does not exist")
            label = _model_label(root)
            for t in tasks:
                d = root / f"{t}_{s}"
                if not d.is_dir():
                    raise ResultsInputError(f"{d} is missing: stage 7 should have written it (task {t}, set {s})")
                if t == AUDIO_TASK:
                    res.audio.append(System(label, _load_json(d / "scores.json", "stage 8 audio scores"), d / "wav.scp"))
                    if (d / "wav_vae.scp").is_file():
                        res.audio.append(System(f"{label} + VAE", _load_json(d / "scores_vae.json",
                                                "stage 8 scores of the VAE-enhanced audio"), d / "wav_vae.scp"))
                    res.heldout.append((label, _load_json(d / "heldout_loss.json", "stage 7 held-out loss")))
                elif t == CAPTION_TASK:
                    res.captions.append((label, _load_json(d / "scores.json", "stage 8 caption scores")))
                else:
                    res.understanding.append((label, t, _load_json(d / "scores_understanding.json",
                                                                    "stage 7 understanding scores")))
        if AUDIO_TASK in tasks and ceilings_root is not None:
            cdir = Path(ceilings_root) / f"ceilings_{s}"
            for name, label in CEILINGS:
                sub = cdir / name
                if name == "vae" and not sub.is_dir():
                    continue  # no VAE in this recipe
                res.audio.append(System(label, _load_json(sub / "scores.json", f"stage 8 {label}"), sub / "wav.scp"))
        out.append(res)
    return out


def _fmt(x: Any) -> str:
    if isinstance(x, (int, float)):
        return f"{x:.4f}"
    return str(x)


def audio_table(systems: Sequence[System]) -> str:
    """Long table grouped by metric, so the model's rows sit next to the ceilings'."""
    metrics: List[str] = []
    for sysm in systems:
        metrics += [m for m in sysm.scores if m not in metrics]
    lines = ["| metric | system | value | direction | backbone | sample rate | n |", "|---|---|---:|---|---|---|---:|"]
    for m in metrics:
        for sysm in systems:
            r = sysm.scores.get(m)
            if r is None:
                lines.append(f"| {m} | {sysm.label} | - | | | | |")
                continue
            sr = f"{r['sample_rate']} Hz" if r.get("sample_rate") else "-"
            extra = ""
            if "direction" in r.get("details", {}):  # KL direction
                extra = f" ({r['details']['direction']})"
            lines.append(f"| {m} | {sysm.label} | {_fmt(r['value'])} | {r['direction']}{extra} | {r['backbone']} "
                         f"| {sr} | {r['num_items']} |")
    return "\n".join(lines)


def caption_table(rows: Sequence[Tuple[str, Dict[str, Any]]]) -> str:
    lines = ["| model | metric | value | direction | backbone | n |", "|---|---|---:|---|---|---:|"]
    for label, scores in rows:
        for m, r in scores.items():
            lines.append(f"| {label} | {m} | {_fmt(r['value'])} | {r['direction']} | {r['backbone']} | {r['num_items']} |")
    return "\n".join(lines)


def heldout_table(rows: Sequence[Tuple[str, Dict[str, Any]]]) -> str:
    lines = ["| model | model loss (nats/token) | unigram baseline | uniform | examples | frames |",
             "|---|---:|---:|---:|---:|---:|"]
    for label, r in rows:
        try:
            lines.append(f"| {label} | {r['model']['mean']:.3f} | {r['unigram']['mean']:.3f} | {r['uniform_nats']:.3f} "
                         f"| {r['num_examples']} | {r['num_frames']} |")
        except KeyError as e:
            raise ResultsInputError(f"held-out loss of {label}: field {e} missing (not a lm_heldout_loss output)") from None
    note = rows[0][1].get("metric", "") if rows else ""
    return "\n".join(lines) + (f"\n\nMetric: {note}." if note else "")


def understanding_section(label: str, task: str, scores: Mapping[str, Any]) -> str:
    from ualm_tk.scoring.understanding import to_markdown

    try:
        md = to_markdown(scores, f"{task}: {label}")
    except KeyError as e:
        raise ResultsInputError(f"understanding scores of {label} ({task}): field {e} missing") from None
    return md.replace("# ", "### ", 1)


# ---- plots ----
def _mpl():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def bar_chart(systems: Sequence[System], path: Path, title: str) -> Optional[Path]:
    """One panel per main metric (own scale and direction), one bar per system."""
    metrics: List[str] = []
    for s in systems:
        metrics += [m for m in s.scores if m not in metrics and m.split("[")[0].startswith(MAIN_METRICS)]
    if not metrics:
        logger.warning("%s: no main audio metrics to draw", title)
        return None
    plt = _mpl()
    ncol = min(3, len(metrics))
    nrow = (len(metrics) + ncol - 1) // ncol
    fig, axes = plt.subplots(nrow, ncol, figsize=(4.2 * ncol, 3.4 * nrow), squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, m in zip(axes.flat, metrics):
        vals = [float(s.scores[m]["value"]) if m in s.scores and isinstance(s.scores[m]["value"], (int, float))
                else float("nan") for s in systems]
        ax.bar(range(len(systems)), vals, color=[colors[i % len(colors)] for i in range(len(systems))])
        ax.set_xticks(range(len(systems)))
        ax.set_xticklabels([f"S{i + 1}" for i in range(len(systems))])
        d = next(s.scores[m]["direction"] for s in systems if m in s.scores)
        ax.set_title(f"{m}\n({d})", fontsize=8)
    for ax in list(axes.flat)[len(metrics):]:
        ax.axis("off")
    legend = "; ".join(f"S{i + 1} = {s.label}" for i, s in enumerate(systems))
    fig.suptitle(title, fontsize=10)
    fig.text(0.01, 0.005, legend, fontsize=7, wrap=True)
    fig.tight_layout(rect=(0, 0.06, 1, 0.95))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def _read_scp(scp: Path) -> Dict[str, str]:
    from ualm_tk.scoring.score_dir import read_wav_scp

    return read_wav_scp(scp)


def spectrograms(columns: Sequence[Tuple[str, Dict[str, str]]], keys: Sequence[str], captions: Mapping[str, str],
                 path: Path, title: str) -> Path:
    """Rows = keys, columns = (reference, generation, ...) log spectrograms, caption above each row."""
    from ualm_tk.audio.io import load_audio

    plt = _mpl()
    fig, axes = plt.subplots(len(keys), len(columns), figsize=(3.6 * len(columns), 2.4 * len(keys)), squeeze=False)
    for i, k in enumerate(keys):
        for j, (name, scp) in enumerate(columns):
            ax = axes[i, j]
            wav, sr = load_audio(scp[k])  # [C, L]
            mono = np.pad(wav.mean(axis=0), (0, max(0, 1024 - wav.shape[-1])))  # very short generations
            with np.errstate(divide="ignore"):
                ax.specgram(mono + 1e-9, NFFT=512, Fs=sr, noverlap=384, cmap="magma")
            ax.set_title(f"{name}: {k}" if j else f"{name}: {k}\n{captions.get(k, '')[:60]}", fontsize=7)
            ax.tick_params(labelsize=6)
            if j == 0:
                ax.set_ylabel("Hz", fontsize=7)
    fig.suptitle(title, fontsize=8)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.16 * (title.count("\n") + 1) / fig.get_figheight()))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def write_report(sets: Sequence[SetResults], out: Path, audio_dump: Optional[Path], num_samples: int = 3,
                 command: str = "") -> Dict[str, List[Path]]:
    """Write the markdown page, its PNGs and sample wavs; returns {"images": [...], "samples": [...]}."""
    out = Path(out)
    img_dir, wav_dir = out.parent / "results_images", out.parent / "results_samples"
    images: List[Path] = []
    samples: List[Path] = []
    # outputs of an earlier call (other sets or tasks) would be mistaken for this page's
    for stale in [*img_dir.glob("metrics_*.png"), *img_dir.glob("spectrograms_*.png"), *wav_dir.glob("*/*.wav")]:
        stale.unlink()
    md = ["# UALM results", "",
          "Every audio metric row states its backbone (the evaluator model), the sample rate it scored at "
          "and its direction; compare numbers only within one protocol.", ""]
    if command:
        md += [f"Made by: `{command}`", ""]
    for sr_ in sets:
        md += [f"## Test set `{sr_.name}`", ""]
        if sr_.audio:
            models = [s for s in sr_.audio if not s.label.startswith("ceiling")]
            md += ["### Text-to-audio generation (caption_to_audio)", "",
                   "Model rows next to the ceilings: the ground-truth clips, their codec resynthesis "
                   "and its VAE enhancement, scored the same way against the same references.", "",
                   audio_table(sr_.audio), ""]
            chart = bar_chart(sr_.audio, img_dir / f"metrics_{sr_.name}.png", f"caption_to_audio on {sr_.name}")
            if chart:
                images.append(chart)
                md += [f"![main metrics]({chart.relative_to(out.parent)})", ""]
            if audio_dump is not None and models:
                ref_scp = Path(audio_dump) / sr_.name / "wav.scp"
                refs = _read_scp(ref_scp)
                text_f = Path(audio_dump) / sr_.name / "text"
                caps = read_kaldi_file(text_f) if text_f.is_file() else {}
                cols = [("reference", refs)] + [(s.label, _read_scp(s.wav_scp)) for s in models]
                short = ["reference"] + [f"S{j + 1}" for j in range(len(models))]
                keys = sorted(cols[1][1])[:num_samples]
                missing = [k for k in keys if k not in refs]
                if missing:
                    raise ResultsInputError(f"{ref_scp}: no reference audio for generated key(s) {missing}")
                spec = spectrograms([(n, scp) for n, (_, scp) in zip(short, cols)], keys, caps,
                                    img_dir / f"spectrograms_{sr_.name}.png",
                                    f"generations next to their reference clips ({sr_.name})\n"
                                    + "\n".join(f"S{j + 1} = {m.label}" for j, m in enumerate(models)))
                images.append(spec)
                md += [f"![spectrograms]({spec.relative_to(out.parent)})", "", "Sample clips:", ""]
                for k in keys:
                    row = []
                    for j, (name, scp) in enumerate(cols):
                        # S1 generated, S2 generated_vae (its VAE), S3 generated3, S4 generated3_vae, ...
                        tag = "reference" if j == 0 else ("generated_vae" if name.endswith("+ VAE") else "generated")
                        if j > 1 and tag == "generated":
                            tag = f"generated{j}"
                        elif j > 2 and tag == "generated_vae":
                            tag = f"generated{j - 1}_vae"
                        dst = wav_dir / sr_.name / f"{k}.{tag}.wav"
                        dst.parent.mkdir(parents=True, exist_ok=True)
                        shutil.copyfile(scp[k], dst)
                        samples.append(dst)
                        row.append(f"[{tag}]({dst.relative_to(out.parent)})")
                    md.append(f"- `{k}` ({caps.get(k, '')}): " + ", ".join(row))
                md.append("")
        if sr_.heldout:
            md += ["### Held-out audio-token loss vs unigram baseline", "", heldout_table(sr_.heldout), ""]
        if sr_.captions:
            md += ["### Audio captioning (audio_to_caption)", "",
                   "pycocoevalcap (SPICE is not available offline).", "", caption_table(sr_.captions), ""]
        for label, task, scores in sr_.understanding:
            md += [understanding_section(label, task, scores), ""]
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text("\n".join(md) + "\n", encoding="utf-8")
    tmp.replace(out)
    return {"images": images, "samples": samples}
