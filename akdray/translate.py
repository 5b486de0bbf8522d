"""``akdray translate``: run a generator (akdray or official pix2pix) on images, one PNG per input.

Pre- and post-processing follow the official test pipeline (``data/base_dataset.py`` get_transform
with load_size = crop_size, ``util/util.py`` tensor2im): bicubic resize to the model's size,
[-1, 1] normalisation, batch 1, and back to uint8 as ``(y + 1) / 2 * 255`` truncated (tensor2im
truncates; akdray's metrics round, so outputs can differ from them by one grey level).

The inference mode is explicit and printed: ``train`` (batch statistics, dropout on) is what the
official ``test.py`` does without ``--eval``; ``eval`` uses the BatchNorm running statistics.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from PIL import Image
from tqdm.auto import tqdm

from akdray.checkpoint import LoadedGenerator, load_generator
from akdray.config import DIRECTIONS, INFERENCE_MODES, ConfigError
from akdray.inputs import list_input_files, read_input
from akdray.outdir import atomic_dir, check_out_dir
from akdray.pix2pix_format import check_image_size
from akdray.preflight import check_not_inside
from akdray.train import forward_in_mode, inference_copy, to_float


def official_uint8(images: torch.Tensor) -> torch.Tensor:
    """float [-1, 1] -> uint8 as the official tensor2im: ``(y + 1) / 2 * 255``, truncated."""
    return ((images.detach().float().clamp(-1.0, 1.0) + 1.0) / 2.0 * 255.0).to(torch.uint8)


def default_inference_mode(loaded: LoadedGenerator) -> str:
    """The run's own mode for an akdray checkpoint; ``train`` (official test.py without --eval) otherwise."""
    return loaded.cfg.inference_mode if loaded.format == "akdray" else "train"


@dataclass(frozen=True)
class TranslateSummary:
    """What ``translate`` did, printed by the CLI."""

    checkpoint: str
    format: str
    n_images: int
    image_size: int
    inference_mode: str
    direction: str
    aligned_input: bool
    seconds: float
    seconds_per_image: float


def _check_choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"{name} {value!r} is not one of {', '.join(allowed)}")


def translate(checkpoint: str | Path, input_path: str | Path, out_dir: str | Path, *,
              inference_mode: str | None = None, image_size: int | None = None, direction: str | None = None,
              layout: str = "auto", use_dropout: bool = True, seed: int = 0, progress: bool = True) -> TranslateSummary:
    """Translate every input image into ``out_dir/<name>.png`` (a new or empty folder, written atomically)."""
    out = check_out_dir(out_dir)
    check_not_inside(out, {"--input": input_path, "--checkpoint": checkpoint})
    loaded = load_generator(checkpoint, image_size=image_size, use_dropout=use_dropout)
    size = image_size or loaded.cfg.image_size
    check_image_size(size, loaded.cfg.resolved_unet_depth, loaded.file)
    mode = inference_mode or default_inference_mode(loaded)
    direction = direction or (loaded.cfg.direction if loaded.format == "akdray" else "AtoB")
    _check_choice("--inference-mode", mode, INFERENCE_MODES)
    _check_choice("--direction", direction, DIRECTIONS)
    files = list_input_files(input_path, layout)  # every header checked before any work
    model = inference_copy(loaded.generator, mode)
    torch.manual_seed(seed)  # train mode: the dropout masks are seeded
    t0 = time.perf_counter()
    with atomic_dir(out) as tmp, torch.no_grad():
        for f in tqdm(files, desc="translate", unit="img", disable=not progress or len(files) < 2, leave=False):
            x = to_float(read_input(f, size, direction).unsqueeze(0))
            y = official_uint8(forward_in_mode(model, x, mode))[0]
            Image.fromarray(y.permute(1, 2, 0).numpy()).save(tmp / f"{f.path.stem}.png")
    seconds = time.perf_counter() - t0
    return TranslateSummary(str(loaded.file), loaded.format, len(files), size, mode, direction,
                            files[0].aligned, seconds, seconds / len(files))


def format_translate(summary: TranslateSummary, out: str | Path) -> str:
    rows = asdict(summary)
    rows["seconds"] = f"{summary.seconds:.2f}"
    rows["seconds_per_image"] = f"{summary.seconds_per_image:.3f}"
    return f"akdray translate -> {out}\n" + "\n".join(f"  {k:<18} {v}" for k, v in rows.items())
