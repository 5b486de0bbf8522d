"""Opacus wrapping of pix2pix's generator and discriminator for DP-SGD (see akdray.defenses.dpsgd).

Per-sample gradients for the two-forward D loss, gating of D's hooks during G's step, out-of-place
activations, and an exact ConvTranspose2d grad sampler; :func:`make_private_gan` is the front door.
"""
from __future__ import annotations

import types
import warnings
from dataclasses import dataclass
from typing import Callable

import torch
from opacus import GradSampleModule
from opacus.optimizers import DPOptimizer
from opacus.optimizers.optimizer import _check_processed_flag, _mark_as_processed
from opacus.validators import ModuleValidator
from torch import nn

from akdray.config import RunConfig
from akdray.models import UnetBlock
from akdray.train import gan_l1_step, make_adam

# Opacus attributes left on parameters / modules by its hooks and optimizers.
_PARAM_ATTRS = ("grad_sample", "_current_grad_sample", "summed_grad", "_forward_counter")
_MODULE_ATTRS = ("activations", "max_batch_len")
_FIRST_LAYER_WARNING = "Full backward hook is firing when gradients are computed with respect to module outputs"


# --------------------------------------------------------------------------------------------
# Making pix2pix's networks Opacus-compatible
# --------------------------------------------------------------------------------------------
def _out_of_place(model: nn.Module) -> Callable[[], None]:
    """Make every in-place activation out-of-place without changing the function; returns undo.

    A non-outermost U-Net block starts with ``LeakyReLU(inplace=True)`` on its input x and then
    returns ``cat([x, out])``: the in-place op also changes the skip half. That LeakyReLU becomes
    an Identity and a forward pre-hook applies it (out of place) to the block's input, so the
    skip still carries LeakyReLU(x).
    """
    undo: list[Callable[[], None]] = []
    for block in list(model.modules()):
        if isinstance(block, UnetBlock) and not block.outermost:
            act = block.model[0]
            if isinstance(act, nn.LeakyReLU) and act.inplace:
                block.model[0] = nn.Identity()
                handle = block.register_forward_pre_hook(
                    lambda _m, args, slope=act.negative_slope: (nn.functional.leaky_relu(args[0], slope), *args[1:]))

                def restore(block=block, act=act, handle=handle) -> None:
                    handle.remove()
                    block.model[0] = act
                undo.append(restore)
    for m in model.modules():
        if getattr(m, "inplace", None) is True:
            m.inplace = False
            undo.append(lambda m=m: setattr(m, "inplace", True))

    def undo_all() -> None:
        for fn in reversed(undo):
            fn()
    return undo_all


class _LeanDPOptimizer(DPOptimizer):
    """Opacus' DPOptimizer with its noise and its scaling in one pass over each gradient.

    ``grad = (sum_i clip(g_i) + N(0, (sigma C)^2 I)) / B`` (Abadi et al. 2016, Alg. 1, with Opacus'
    "mean" reduction over the expected batch B), the same noise drawn from the same generator in
    the same order as :meth:`DPOptimizer.add_noise`, and the same arithmetic (bit for bit); only
    the buffers differ: Opacus allocates a zero tensor per parameter before drawing, then a sum, then
    divides in a third pass. ``secure_mode`` noise is left to Opacus.
    """

    def add_noise(self) -> None:
        if self.secure_mode:
            super().add_noise()
            super().scale_grad()
            return
        std = self.noise_multiplier * self.max_grad_norm
        denominator = self.expected_batch_size * self.accumulated_iterations if self.loss_reduction == "mean" else 1.0
        for p in self.params:
            _check_processed_flag(p.summed_grad)
            summed = p.summed_grad
            if std > 0:
                grad = torch.normal(0.0, std, summed.shape, generator=self.generator, device=summed.device,
                                    dtype=summed.dtype).add_(summed)
            else:
                grad = summed.clone()
            p.grad = grad.div_(denominator).view_as(p)
            _mark_as_processed(p.summed_grad)

    def scale_grad(self) -> None:
        """Done by :meth:`add_noise`."""


class _GatedDPOptimizer(_LeanDPOptimizer):
    """DPOptimizer whose module's Opacus hooks are on only from ``zero_grad`` to ``step``.

    Used for D: between D's step and its next ``zero_grad`` the only backward through D is G's,
    whose D per-sample gradients must neither be computed nor reach D's next clipped step.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, *, gsm: GradSampleModule, **kwargs) -> None:
        super().__init__(optimizer, **kwargs)
        self._gsm = gsm

    def zero_grad(self, set_to_none: bool = False) -> None:
        super().zero_grad(set_to_none)
        self._gsm.enable_hooks()

    def step(self, closure=None):
        out = super().step(closure)
        self._gsm.disable_hooks()
        for p in self.params:
            p.grad_sample = None
        return out


@dataclass
class PrivateGAN:
    """G and D wrapped for DP-SGD, with their DP optimisers; :meth:`step` is one iteration."""

    G: GradSampleModule
    D: GradSampleModule
    opt_G: DPOptimizer
    opt_D: _GatedDPOptimizer
    _undo: tuple[Callable[[], None], ...]

    def step(self, x: torch.Tensor, target: torch.Tensor, lam: float, gan_mode: str) -> dict[str, float] | None:
        """One pix2pix iteration on a Poisson batch (losses), or a noise-only step if it is empty (None)."""
        if len(x) == 0:
            self._noise_only_step()
            return None
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=_FIRST_LAYER_WARNING)
            return gan_l1_step(self.G, self.D, self.opt_G, self.opt_D, x, target, lam, gan_mode)

    def _noise_only_step(self) -> None:
        """Empty batch: clipped sum is 0, the update is noise only (Opacus' behaviour), D then G."""
        for opt in (self.opt_D, self.opt_G):
            opt.zero_grad(set_to_none=True)
            for p in opt.params:
                p.grad_sample = torch.zeros((0, *p.shape), device=p.device, dtype=p.dtype)
            opt.step()

    def use_stock_opacus(self) -> None:
        """Give both networks Opacus' own step: its copying of every per-sample gradient and its
        noise and scaling. The reference this class's cheaper step is checked against, bit for bit
        (``tests/test_dpsgd_step.py``, ``benchmarks/bench_dpsgd_step.py``)."""
        for opt, module in ((self.opt_G, self.G), (self.opt_D, self.D)):
            module.GRAD_SAMPLERS = _SAMPLERS
            opt.add_noise = types.MethodType(DPOptimizer.add_noise, opt)
            opt.scale_grad = types.MethodType(DPOptimizer.scale_grad, opt)

    def unwrap_generator(self) -> nn.Module:
        """The plain generator: Opacus hooks removed, in-place activations restored."""
        return _unwrap(self.G, self._undo[0])


def _conv_transpose2d_grad_sample(layer: nn.ConvTranspose2d, activations: list[torch.Tensor],
                                  backprops: torch.Tensor) -> dict[nn.Parameter, torch.Tensor]:
    """Per-sample gradients of a ConvTranspose2d (Opacus 1.6 only has a slow functorch fallback).

    conv_transpose2d(a; W) is the adjoint of conv2d(.; W) (same W, same stride / padding), so
    <g, conv_transpose2d(a; W)> = <conv2d(g; W), a> and the per-sample weight gradient is that of
    a conv2d with input g and output gradient a: ``grad_W[n] = a[n] @ unfold(g[n])^T``.
    """
    a = activations[0].to(backprops.dtype)
    n = a.shape[0]
    ret: dict[nn.Parameter, torch.Tensor] = {}
    if layer.weight.requires_grad:
        cols = nn.functional.unfold(backprops, layer.kernel_size, padding=layer.padding, stride=layer.stride)
        grad = torch.einsum("nil,njl->nij", a.reshape(n, a.shape[1], -1), cols)
        ret[layer.weight] = grad.reshape(n, *layer.weight.shape).contiguous()
    if layer.bias is not None and layer.bias.requires_grad:
        ret[layer.bias] = backprops.sum(dim=(2, 3))
    return ret


# Opacus' grad samplers plus the exact ConvTranspose2d one; akdray's module wraps each in _kept_as_computed.
_SAMPLERS = {**GradSampleModule.GRAD_SAMPLERS, nn.ConvTranspose2d: _conv_transpose2d_grad_sample}

GradSampler = Callable[[nn.Module, list[torch.Tensor], torch.Tensor], dict[nn.Parameter, torch.Tensor]]


def _kept_as_computed(sampler: GradSampler) -> GradSampler:
    """``sampler``, storing a parameter's first per-sample gradient of a backward pass as it is.

    Opacus' hook copies every per-sample gradient into a fresh zero tensor
    (``create_or_accumulate_grad_sample``): an allocation and a copy of every per-sample gradient
    in every step. A gradient the sampler has just computed needs no copy: it becomes the
    parameter's ``_current_grad_sample`` here and is left out of the returned dict. A later one in the same
    backward pass (D's second forward) is returned, and Opacus adds it into that tensor. A gradient
    that shares memory with the layer's activations or backprops goes the copying way.
    """
    def sample(layer: nn.Module, activations: list[torch.Tensor], backprops: torch.Tensor) -> dict:
        inputs = {t.untyped_storage().data_ptr() for t in (*activations, backprops)}
        passed = {}
        for param, grad in sampler(layer, activations, backprops).items():
            if (param.requires_grad and not hasattr(param, "_current_grad_sample")
                    and grad.shape[0] == layer.max_batch_len and grad.untyped_storage().data_ptr() not in inputs):
                param._current_grad_sample = grad
            else:
                passed[param] = grad
        return passed
    return sample


class _Pix2PixGradSampleModule(GradSampleModule):
    """Opacus' hook-based GradSampleModule plus an exact ConvTranspose2d grad sampler, every sampler
    :func:`_kept_as_computed` (local to this class: Opacus' global registry is left untouched)."""

    GRAD_SAMPLERS = {layer: _kept_as_computed(sampler) for layer, sampler in _SAMPLERS.items()}

    def __init__(self, m: nn.Module, **kwargs) -> None:
        for name, layer in m.named_modules():
            if isinstance(layer, nn.ConvTranspose2d) and (
                    layer.groups != 1 or tuple(layer.dilation) != (1, 1) or tuple(layer.output_padding) != (0, 0)
                    or isinstance(layer.padding, str)):
                raise NotImplementedError(f"{name}: only groups=1, dilation=1, output_padding=0 ConvTranspose2d is supported")
        super().__init__(m, **kwargs)


def _unwrap(gsm: GradSampleModule, undo: Callable[[], None]) -> nn.Module:
    gsm.remove_hooks()
    module = gsm._module
    undo()
    for p in module.parameters():
        p.grad = None  # the last noisy gradient; not part of the model
        for attr in _PARAM_ATTRS:
            if hasattr(p, attr):
                delattr(p, attr)
    for m in module.modules():
        for attr in _MODULE_ATTRS:
            if hasattr(m, attr):
                delattr(m, attr)
    return module


def make_private_gan(G: nn.Module, D: nn.Module, cfg: RunConfig, *, expected_batch_size: float,
                     noise_generator: torch.Generator | None) -> PrivateGAN:
    """Wrap G and D (modified in place) for DP-SGD with Adam(cfg) inside Opacus DPOptimizers.

    ``noise_multiplier=cfg.dp_noise_multiplier``, ``max_grad_norm=cfg.dp_max_grad_norm``,
    loss_reduction "mean" over ``expected_batch_size``, ``secure_mode=False`` (seeded noise).
    """
    for name, model in (("generator", G), ("discriminator", D)):
        errors = ModuleValidator.validate(model, strict=False)
        if errors:
            raise ValueError(f"the {name} is not Opacus-compatible (norm={cfg.norm!r}; DP-SGD needs "
                             f"norm='group' or 'instance'): {errors}")
    undo = (_out_of_place(G), _out_of_place(D))
    G_dp = _Pix2PixGradSampleModule(G, batch_first=True, loss_reduction="mean")
    D_dp = _Pix2PixGradSampleModule(D, batch_first=True, loss_reduction="mean")
    kwargs = dict(noise_multiplier=cfg.dp_noise_multiplier, max_grad_norm=cfg.dp_max_grad_norm,
                  expected_batch_size=expected_batch_size, loss_reduction="mean",
                  generator=noise_generator, secure_mode=False)
    opt_G = _LeanDPOptimizer(make_adam(G_dp, cfg), **kwargs)
    opt_D = _GatedDPOptimizer(make_adam(D_dp, cfg), gsm=D_dp, **kwargs)
    return PrivateGAN(G_dp, D_dp, opt_G, opt_D, undo)
