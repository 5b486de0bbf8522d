"""Milliseconds of one cpu-small training step, akdray's optimisers against the stock ones, side by side.

    python benchmarks/bench_dpsgd_step.py [--rounds 7] [--steps 15] [--preset cpu-small]

Five steps on the same batch (the preset's batch size and image size), built once and timed in
interleaved rounds so that all see the same machine; figures are medians over the rounds of the
CPU time per step (one intra-op thread, as a trial has on a 2-core sweep):

* ``pix2pix, per-tensor Adam``: :func:`akdray.train.gan_l1_step` with ``torch.optim.Adam`` as it
  is built by default on a CPU (a loop over the parameters);
* ``pix2pix, fused Adam``: the same with :func:`akdray.train.make_adam` (``fused=True``);
* ``DP-SGD, stock Opacus``: :class:`akdray.defenses.private_gan.PrivateGAN` with Opacus' own
  step (:meth:`~akdray.defenses.private_gan.PrivateGAN.use_stock_opacus`: each per-sample gradient
  copied into a zero tensor, ``DPOptimizer.add_noise`` / ``scale_grad``) and per-tensor Adam
  (akdray before this change);
* ``DP-SGD, stock + fused Adam``: the same with :func:`akdray.train.make_adam`, so that the next
  line's ratio to it is what akdray's DP-SGD changes alone give;
* ``DP-SGD, akdray``: :func:`akdray.defenses.private_gan.make_private_gan` as it is.

It also prints the minor page faults per step. Before timing, it checks that akdray's DP-SGD step
and stock Opacus' with the same Adam give the same gradients and weights, bit for bit, from the
same seeds over two steps, and stops if they do not.
"""
from __future__ import annotations

import argparse
import copy
import resource
import statistics
import time
import warnings

import torch

from akdray.config import make_config
from akdray.defenses.dpsgd import dp_model_config
from akdray.defenses.private_gan import make_private_gan
from akdray.models import build_discriminator, build_generator
from akdray.train import gan_l1_step, make_adam


def stock_adam(module: torch.nn.Module, cfg) -> torch.optim.Adam:
    return torch.optim.Adam(module.parameters(), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2))


def private(cfg, G, D, stock: bool, adam=make_adam):
    gan = make_private_gan(G, D, cfg, expected_batch_size=float(cfg.batch_size),
                           noise_generator=torch.Generator().manual_seed(1))
    if stock:  # Opacus' copies of per-sample gradients, its noise and its scaling
        gan.use_stock_opacus()
    if adam is not make_adam:
        for opt, module in ((gan.opt_G, gan.G), (gan.opt_D, gan.D)):
            opt.original_optimizer = adam(module, cfg)
    return gan


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--preset", default="cpu-small")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--steps", type=int, default=15, help="steps per variant and round")
    args = ap.parse_args()
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore", message="Full backward hook is firing")
    cfg = make_config(args.preset)
    dp_cfg = dp_model_config(cfg)
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(cfg.batch_size, 3, cfg.image_size, cfg.image_size, generator=g) * 2 - 1
    y = torch.rand(cfg.batch_size, 3, cfg.image_size, cfg.image_size, generator=g) * 2 - 1
    G, D = build_generator(cfg).train(), build_discriminator(cfg).train()
    G_dp, D_dp = build_generator(dp_cfg).train(), build_discriminator(dp_cfg).train()

    steps = {}
    for name, adam in (("pix2pix, per-tensor Adam", stock_adam), ("pix2pix, fused Adam", make_adam)):
        g_, d_ = copy.deepcopy(G), copy.deepcopy(D)
        opt_G, opt_D = adam(g_, cfg), adam(d_, cfg)
        steps[name] = (lambda g_=g_, d_=d_, a=opt_G, b=opt_D: gan_l1_step(g_, d_, a, b, x, y, cfg.l1_lambda, cfg.gan_mode))
    gans = {"DP-SGD, stock Opacus": private(dp_cfg, copy.deepcopy(G_dp), copy.deepcopy(D_dp), True, stock_adam),
            "DP-SGD, stock + fused Adam": private(dp_cfg, copy.deepcopy(G_dp), copy.deepcopy(D_dp), True),
            "DP-SGD, akdray": private(dp_cfg, copy.deepcopy(G_dp), copy.deepcopy(D_dp), False)}

    # Same weights, dropout masks and noise seed, two D+G steps: akdray's and stock Opacus' (with the
    # same fused Adam) must hand Adam the same gradients, bit for bit.
    for step in range(2):
        for name in ("DP-SGD, stock + fused Adam", "DP-SGD, akdray"):
            torch.manual_seed(5 + step)
            gans[name].step(x, y, cfg.l1_lambda, cfg.gan_mode)
    pairs = list(zip([*gans["DP-SGD, stock + fused Adam"].G.parameters(), *gans["DP-SGD, stock + fused Adam"].D.parameters()],
                     [*gans["DP-SGD, akdray"].G.parameters(), *gans["DP-SGD, akdray"].D.parameters()]))
    if not all(torch.equal(a.grad, b.grad) and torch.equal(a, b) for a, b in pairs):
        raise SystemExit("akdray's DP-SGD step differs from stock Opacus' step")
    for name, gan in gans.items():
        steps[name] = lambda gan=gan: gan.step(x, y, cfg.l1_lambda, cfg.gan_mode)

    for step in steps.values():  # warm-up
        for _ in range(3):
            step()
    ms: dict[str, list[float]] = {k: [] for k in steps}
    faults: dict[str, list[float]] = {k: [] for k in steps}
    for _ in range(args.rounds):
        for name, step in steps.items():
            f0, t0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt, time.process_time()
            for _ in range(args.steps):
                step()
            ms[name].append((time.process_time() - t0) / args.steps * 1e3)
            faults[name].append((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0) / args.steps)

    print(f"{args.preset}: batch {cfg.batch_size}, {cfg.image_size} px, ngf {cfg.ngf}, ndf {cfg.ndf}; torch {torch.__version__}, "
          f"1 thread; {args.rounds} interleaved rounds of {args.steps} steps; CPU ms per step, median (min-max)")
    print("DP-SGD, akdray vs stock + fused Adam, same seeds, 2 steps: gradients and weights bit for bit equal")
    for name in steps:
        v = ms[name]
        print(f"  {name:28s} {statistics.median(v):7.1f} ({min(v):.1f}-{max(v):.1f})   page faults/step {statistics.median(faults[name]):7.0f}")
    for new, old in (("pix2pix, fused Adam", "pix2pix, per-tensor Adam"), ("DP-SGD, akdray", "DP-SGD, stock + fused Adam"),
                     ("DP-SGD, akdray", "DP-SGD, stock Opacus")):
        ratios = [a / b for a, b in zip(ms[new], ms[old])]
        print(f"  {new} / {old}: {statistics.median(ratios):.3f} (median of per-round ratios, {min(ratios):.3f}-{max(ratios):.3f})")


if __name__ == "__main__":
    main()
