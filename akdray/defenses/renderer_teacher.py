"""The synthetic renderer as a *perfect* teacher: issue #24's gate for the paper's quality claim.

A GAN student beats an L1 student when the labels it imitates vary for the same input (L1 regresses
to the per-pixel median and blurs; a GAN need not). Official pix2pix serves its generator with
dropout on - the noise z - so its teacher is such a stochastic labeller. Whether AKD can use that at
all is tested here without a trained teacher's own errors in the way: the labeller is the ``sharp``
renderer itself (:func:`akdray.data.synthetic.render_one`), which knows each proxy input's layout
and draws its crisp detail (brick bond, glare, mullions, planks) again at every query
(``stochastic=True``: the e-th query of an input gets texture draw ``first_draw + e``), or returns one
fixed draw every time (``stochastic=False``: a deterministic teacher, the gate's control).

It is a :data:`akdray.defenses.distill.TeacherQuery` - float [-1, 1] batch in, float batch out - and
finds each input's layout by its exact pixels, so it only labels the proxy inputs it was built with
and only without training jitter (a jittered input is refused by name).
"""
from __future__ import annotations

from collections import Counter

import torch

from akdray.data.synthetic import render_one
from akdray.metrics.features import to_uint8
from akdray.train import to_float


class RendererTeacher:
    """Label proxy inputs ``x`` (uint8 ``[N, 3, H, W]`` of role ``role``, seed ``data_seed``) by rendering."""

    def __init__(self, x: torch.Tensor, data_seed: int, role: str = "proxy", style: str = "sharp", *,
                 stochastic: bool = True, fixed_draw: int = 0, first_draw: int = 100) -> None:
        self._index = {image.numpy().tobytes(): i for i, image in enumerate(x)}
        if len(self._index) != len(x):
            raise ValueError("two proxy inputs have identical pixels; the renderer cannot tell their layouts apart")
        self.size, self.data_seed, self.role, self.style = x.shape[-1], data_seed, role, style
        self.stochastic, self.fixed_draw, self.first_draw = stochastic, fixed_draw, first_draw
        self.queries: Counter[int] = Counter()  # how often each proxy input was labelled
        self._photos: dict[tuple[int, int], torch.Tensor] = {}  # (index, draw) -> uint8 photo, shared by students

    def draw_of(self, index: int, query: int) -> int:
        """Texture draw of the ``query``-th label (from 0) of proxy input ``index``."""
        return self.first_draw + query if self.stochastic else self.fixed_draw

    def photo(self, index: int, draw: int) -> torch.Tensor:
        """uint8 ``[3, H, W]`` photo of proxy input ``index`` with texture draw ``draw`` (rendered once)."""
        key = (index, draw)
        if key not in self._photos:
            _, y = render_one(index, self.size, self.data_seed, self.role, self.style, draw)
            self._photos[key] = torch.from_numpy(y).permute(2, 0, 1).contiguous()
        return self._photos[key]

    def index_of(self, x: torch.Tensor) -> list[int]:
        """Proxy indices of a float [-1, 1] batch (exact pixels); KeyError naming the batch position if unknown."""
        out = []
        for pos, image in enumerate(to_uint8(x.detach().cpu())):
            found = self._index.get(image.numpy().tobytes())
            if found is None:
                raise KeyError(f"input {pos} of the batch is not one of the {len(self._index)} proxy inputs "
                               "(training jitter on, or another data set?)")
            out.append(found)
        return out

    @torch.no_grad()
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        labels = []
        for index in self.index_of(x):
            labels.append(self.photo(index, self.draw_of(index, self.queries[index])))
            self.queries[index] += 1
        return to_float(torch.stack(labels)).to(x.device)

    def fork(self) -> "RendererTeacher":
        """The same teacher with its query counts at zero and its rendered photos shared: the next
        student gets exactly the label sequence the previous one got (a paired comparison)."""
        twin = object.__new__(RendererTeacher)
        twin.__dict__.update(self.__dict__)
        twin.queries = Counter()
        return twin
