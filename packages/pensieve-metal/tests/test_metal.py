import os

import mlx.core as mx
import pytest

import pensieve_metal as metal


def test_device_info_reports_this_machine():
    info = metal.device_info()
    assert info.kind in ("metal", "cuda", "cpu")
    assert info.kind == metal.device_kind()
    assert info.memory_total_bytes > 0
    assert info.recommended_working_set_bytes > 0


def test_apply_memory_limits_sets_mlx_limits():
    before = mx.get_memory_limit()
    try:
        applied = metal.apply_memory_limits(memory_fraction=0.5, cache_limit_bytes=1 << 20)
        assert mx.get_memory_limit() == applied.memory_limit_bytes
        assert applied.memory_limit_bytes == metal.device_info().memory_total_bytes // 2
        assert applied.cache_limit_bytes == 1 << 20
        snap = metal.memory_snapshot()
        assert snap.limit_bytes == applied.memory_limit_bytes
    finally:
        mx.set_memory_limit(before)


def test_bad_fraction_is_refused():
    with pytest.raises(ValueError, match="memory_fraction"):
        metal.apply_memory_limits(memory_fraction=1.5)


def test_check_fits_names_need_and_budget():
    from pensieve_core.errors import ModelLoadError

    metal.check_fits("small", 10, budget_bytes=100)
    with pytest.raises(ModelLoadError, match=r"big needs about 2.0 GB for its weights; this .* has 1.0 GB"):
        metal.check_fits("big", 2_000_000_000, budget_bytes=1_000_000_000)


def test_cudnn_attention_is_turned_off_on_cuda_only_and_never_over_the_users_choice(monkeypatch):
    from pensieve_metal.kernels import CUDNN_ATTENTION

    monkeypatch.delenv(CUDNN_ATTENTION, raising=False)
    assert not metal.avoid_per_shape_attention("metal") and not metal.avoid_per_shape_attention("cpu")
    assert CUDNN_ATTENTION not in os.environ
    assert metal.avoid_per_shape_attention("cuda")
    assert os.environ[CUDNN_ATTENTION] == "0"
    monkeypatch.setenv(CUDNN_ATTENTION, "1")  # the user's word stands
    assert not metal.avoid_per_shape_attention("cuda")
    assert os.environ[CUDNN_ATTENTION] == "1"


def test_compiled_kernels_are_kept_under_the_given_folder_on_cuda_only_and_never_over_the_users_choice(
    monkeypatch, tmp_path
):
    from importlib.metadata import version

    from pensieve_metal.kernels import COMPILED_KERNELS

    monkeypatch.delenv(COMPILED_KERNELS, raising=False)
    assert metal.keep_compiled_kernels(tmp_path, "metal") is None
    assert metal.keep_compiled_kernels(tmp_path, "cpu") is None
    assert COMPILED_KERNELS not in os.environ
    folder = metal.keep_compiled_kernels(tmp_path / "kernels", "cuda")
    assert folder is not None and folder.is_dir()
    # One folder per MLX version and device: a kernel built for one GPU must not load on another.
    assert folder.parent == tmp_path / "kernels" / f"mlx-{version('mlx')}"  # as MLX names its own folder
    assert "/" not in folder.name and folder.name
    assert os.environ[COMPILED_KERNELS] == str(folder)
    monkeypatch.setenv(COMPILED_KERNELS, str(tmp_path / "mine"))  # the user's word stands
    assert metal.keep_compiled_kernels(tmp_path / "other", "cuda") is None
    assert os.environ[COMPILED_KERNELS] == str(tmp_path / "mine")
    assert not (tmp_path / "other").exists()
