"""Training throughput of the shared pix2pix step, plain and under DP-SGD (Opacus).

Prints iterations/s and peak memory for ``gan_l1_step`` at a preset's size (e.g. the paper's
256x256 batch 1 on a GPU: expect about 55-70 it/s on an H200) and the DP-SGD cost ratio.
Usage: python benchmarks/bench_throughput.py [--preset facades] [--steps 50] [--device auto]
"""
from __future__ import annotations

import argparse
import time

import torch

from akdray.config import make_config
from akdray.models import build_discriminator, build_generator
from akdray.train import gan_l1_step, make_adam, resolve_device


def timed(step, steps: int, device: torch.device) -> float:
    for _ in range(3):  # warm-up (cuDNN autotune, Opacus hooks)
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return steps / (time.perf_counter() - t0)


def peak_memory(device: torch.device) -> str:
    if device.type != "cuda":
        return "n/a (CPU)"
    mb = torch.cuda.max_memory_allocated(device) / 2**20
    torch.cuda.reset_peak_memory_stats(device)
    return f"{mb:.0f} MiB"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="facades")
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--skip-dp", action="store_true")
    args = ap.parse_args()
    cfg = make_config(args.preset, {"device": args.device})
    device = resolve_device(cfg)
    torch.manual_seed(0)
    b, s = cfg.batch_size, cfg.image_size
    x, y = torch.rand(b, 3, s, s, device=device) * 2 - 1, torch.rand(b, 3, s, s, device=device) * 2 - 1
    G, D = build_generator(cfg).to(device), build_discriminator(cfg).to(device)
    opt_G, opt_D = make_adam(G, cfg), make_adam(D, cfg)
    plain = timed(lambda: gan_l1_step(G, D, opt_G, opt_D, x, y, cfg.l1_lambda, cfg.gan_mode), args.steps, device)
    print(f"device={device} preset={args.preset} size={s} batch={b} ngf={cfg.ngf}")
    print(f"plain pix2pix step: {plain:.1f} it/s, peak memory {peak_memory(device)}")
    if args.skip_dp:
        return
    from akdray.defenses.dpsgd import dp_model_config
    from akdray.defenses.private_gan import make_private_gan

    dp_cfg = dp_model_config(cfg.replace(method="dpsgd"))
    gan = make_private_gan(build_generator(dp_cfg).to(device), build_discriminator(dp_cfg).to(device), dp_cfg,
                           expected_batch_size=b, noise_generator=None)
    dp = timed(lambda: gan.step(x, y, dp_cfg.l1_lambda, dp_cfg.gan_mode), args.steps, device)
    print(f"DP-SGD step (Opacus, GroupNorm): {dp:.1f} it/s, peak memory {peak_memory(device)}; "
          f"cost ratio {plain / dp:.2f}x")


if __name__ == "__main__":
    main()
