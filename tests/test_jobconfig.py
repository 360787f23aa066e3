import pytest

from sparsearch.errors import ConfigError
from sparsearch.jobconfig import JobConfig
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
    assert "magnitude" in _cfg(flash_accounting="sparse").space.pruning_methods


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
