import pytest

from sparsearch.errors import ConfigError
from sparsearch.jobconfig import MAX_INSTRUCTIONS, JobConfig, Limits
from sparsearch.space.params import SpaceConfig
from sparsearch.vocabulary import TARGETS


def _cfg(**kw):
    args = dict(dataset="digits", flash_bytes=24576, ram_bytes=6144, trials=8, parallel=2, epochs=6)
    args.update(kw)
    return JobConfig.create(**args)


def test_roundtrip_through_json_dict():
    cfg = _cfg(seed=3, macs=10_000, train_limit=500)
    again = JobConfig.from_dict(cfg.to_dict())
    assert again == cfg
    assert cfg.budget.finetune_epochs == 2


def test_sparse_accounting_adds_magnitude():
    assert "magnitude" not in _cfg().space.pruning_methods
    assert "magnitude" in _cfg(flash_accounting="sparse", target="tflm").space.pruning_methods


@pytest.mark.parametrize(
    "kw",
    [
        dict(trials=0),
        dict(trials=10**6),
        dict(parallel=0),
        dict(epochs=0),
        dict(flash_bytes=0),
        dict(ram_bytes=-1),
        dict(seed=-1),
        dict(flash_accounting="weird"),
        dict(dataset="a\x00b"),
        dict(train_limit=3),
    ],
)
def test_bad_values_raise_config_error(kw):
    with pytest.raises(ConfigError):
        _cfg(**kw)


def test_magnitude_needs_sparse_accounting():
    with pytest.raises(ConfigError, match="sparse"):
        _cfg(space=SpaceConfig(pruning_methods=("none", "magnitude")))


def test_a_finalize_job_keeps_its_sources_target_unless_told():
    params = [{"n_blocks": 1}]
    for target in TARGETS:
        source = _cfg(target=target)
        assert source.finalizing("job1", [0], params, 9).target == target
        for other in TARGETS:
            final = source.finalizing("job1", [0], params, 9, target=other)
            assert final.target == other and final.finalize is not None
    sparse = _cfg(target="tflm", flash_accounting="sparse")
    with pytest.raises(ConfigError, match="C target"):
        sparse.finalizing("job1", [0], params, 9, target="c")
    with pytest.raises(ConfigError, match="unknown target"):
        sparse.finalizing("job1", [0], params, 9, target="esp32")


# -- the instructions limit (issue 21) ---------------------------------------------------------


@pytest.mark.parametrize("bad", [0, -5, True, 1.5, "5000", MAX_INSTRUCTIONS + 1])
def test_an_instructions_limit_must_be_a_positive_integer_up_to_the_cap(bad):
    with pytest.raises(ConfigError, match="limit instructions") as caught:
        Limits(24576, 6144, instructions=bad)
    assert caught.value.hint
    with pytest.raises(ConfigError, match="limit instructions"):
        _cfg(target="c", instructions=bad)


def test_an_instructions_limit_up_to_the_cap_is_kept():
    assert Limits(24576, 6144, instructions=MAX_INSTRUCTIONS).instructions == MAX_INSTRUCTIONS
    assert _cfg(target="c", instructions=1).limits.instructions == 1
    assert _cfg().limits.instructions is None


def test_fits_refuses_only_instructions_over_a_set_limit():
    lim = Limits(24576, 6144, instructions=50_000)
    assert lim.fits(1000, 1000, None, 50_000)
    assert not lim.fits(1000, 1000, None, 50_001)
    assert not lim.fits(1000, 1000, instructions=50_001)
    assert lim.fits(1000, 1000)  # unknown instructions never refuse
    assert lim.misses(1000, 1000, None, 50_001) == ["instructions 50001 > 50000"]
    assert lim.misses(1000, 1000, None, 50_000) == []
    assert lim.misses(30_000, 1000, None, 60_000) == [
        "flash 30000 B > 24576 B",
        "instructions 60000 > 50000",
    ]
    unlimited = Limits(24576, 6144)
    assert unlimited.fits(1000, 1000, None, 10**11) and unlimited.misses(1, 1, None, 10**11) == []


def test_an_instructions_limit_is_refused_under_tflm_with_a_hint():
    with pytest.raises(ConfigError, match="instructions are measured for the C target") as caught:
        _cfg(target="tflm", instructions=50_000)
    assert "--target c" in caught.value.hint
    # ... and a finalize job of a c job with one cannot move to tflm.
    source = _cfg(target="c", instructions=50_000)
    with pytest.raises(ConfigError, match="C target"):
        source.finalizing("job1", [0], [{"n_blocks": 1}], 9, target="tflm")
    assert source.finalizing("job1", [0], [{"n_blocks": 1}], 9).limits.instructions == 50_000


def test_an_instructions_limit_round_trips_and_old_configs_have_none():
    cfg = _cfg(target="c", instructions=123_456)
    stored = cfg.to_dict()
    assert stored["limits"]["instructions"] == 123_456
    assert JobConfig.from_dict(stored) == cfg
    old = _cfg(target="c").to_dict()
    del old["limits"]["instructions"]  # a job stored before the limit existed
    assert JobConfig.from_dict(old).limits.instructions is None


def test_the_default_target_is_c_and_unstructured_pruning_says_how_to_search_it():
    assert _cfg().target == "c"
    with pytest.raises(ConfigError) as e:
        _cfg(space=SpaceConfig(pruning_methods=("none", "magnitude")))
    assert "--flash-accounting sparse" in e.value.hint and "--target tflm" in e.value.hint
    with pytest.raises(ConfigError) as e:
        _cfg(space=SpaceConfig(pruning_methods=("none", "magnitude")), target="tflm")
    assert "--target tflm" not in e.value.hint
