"""The named random streams (akdray.seeds): the values the literals had, and streams kept apart."""
from __future__ import annotations

import itertools
import zlib

import numpy as np
import torch

from akdray import seeds
from akdray.evaluate import member_halves
from akdray.train import jitter_generator, shuffled_batches


def test_the_streams_keep_the_seeds_the_literals_had():
    """Naming the streams moved no draw: each gives what its literal gave before (akdray 7ce18b6)."""
    for s in (0, 3, 41):
        assert [o.seed(s) for o in seeds.OFFSETS] == [s, s, s + 7919, s + 65_537, s + 31, s + 104_729, s * 100_003,
                                                      s * 1_000_003 + 17, s * 1_000_003 + 71]
        assert seeds.STUDENT_INIT.state(s) == int(np.random.SeedSequence([s, 0x57D]).generate_state(1)[0])
    # the draws themselves, through the functions that use them
    order = torch.randperm(10, generator=torch.Generator().manual_seed(3 + 65_537))
    assert [t.tolist() for t in member_halves(10, 3)] == [sorted(order[:5].tolist()), sorted(order[5:].tolist())]
    first = next(iter(shuffled_batches(9, 9, 3)(2)))
    assert first.tolist() == torch.randperm(9, generator=torch.Generator().manual_seed(3 * 100_003 + 2)).tolist()
    state = np.random.SeedSequence([3, 1, 2, 0x117]).generate_state(1, np.uint64)[0]
    assert jitter_generator(3, 1, 2).initial_seed() == int(state) & 0x7FFF_FFFF_FFFF_FFFF


def test_a_runs_streams_are_distinct_apart_from_the_documented_run_seed_share():
    """Every named stream is its own: no two share their definition, and for run seeds 1..500 the seeds of
    one run's streams (each epoch of the epoch order up to 400 epochs included) never coincide, except
    the documented streams that take the run seed itself (initialisation, proxy subset, Gauss noise)."""
    definitions = [(o.offset, o.stride) for o in seeds.OFFSETS if o.offset or o.stride > 1]
    assert len(set(definitions)) == len(definitions)
    assert len({q.stream_id for q in seeds.SEQUENCES}) == len(seeds.SEQUENCES)
    assert len({stream.name for stream in (*seeds.OFFSETS, *seeds.SEQUENCES)}) == len(seeds.OFFSETS) + len(seeds.SEQUENCES)
    own_seed = [o for o in seeds.OFFSETS if (o.offset, o.stride) == (0, 1)]
    assert [o.name.split(":")[0] for o in own_seed] == ["proxy subset", "Gauss defense"]
    others = [o for o in seeds.OFFSETS if o not in own_seed and o is not seeds.EPOCH_ORDER]
    for s in range(1, 501):
        used = [s, *(o.seed(s) for o in others), *(seeds.EPOCH_ORDER.seed(s) + e for e in range(400))]
        assert len(set(used)) == len(used), s
    # run seed 0: its epoch order reaches another stream's seed at epoch 31 (the documented coincidence)
    assert seeds.EPOCH_ORDER.seed(0) + 31 == seeds.PROXY_MIA.seed(0)


def test_a_studys_sampler_seed_is_the_one_it_had(monkeypatch):
    """Optuna studies keep their TPE seeds (a resumed sweep's studies go on with the same sampler)."""
    import optuna

    from akdray.sweep.search import study_searcher
    from akdray.sweep.spec import Param, Study, SweepSpec

    seeds_given, tpe = [], optuna.samplers.TPESampler
    monkeypatch.setattr(optuna.samplers, "TPESampler", lambda **kw: seeds_given.append(kw["seed"]) or tpe(**kw))
    spec = SweepSpec(name="x", storage="/tmp", search_seed=5)
    space = (Param("dp_noise_multiplier", 0.1, 4.0, log=True),)
    for study in (Study("dpsgd", 3, space, 4, tag="refine1-utility"), Study("akd", 0, space, 4)):
        study_searcher(spec, study, optuna.storages.InMemoryStorage())
    assert seeds_given == [5 + 3 * 101 + 2 + zlib.crc32(b"refine1-utility") % 100_003, 5]


def test_sequence_streams_differ_by_stream_id():
    keys = list(itertools.product(range(4), range(3)))
    jitter = {seeds.JITTER.state(*k) for k in keys}
    student = {seeds.STUDENT_INIT.state(*k) for k in keys}
    assert len(jitter) == len(keys) and not jitter & student
