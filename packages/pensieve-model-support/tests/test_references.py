import pytest

from pensieve_core.errors import ModelNotFoundError
from pensieve_model_support import ALIASES, bundled_gguf_path, resolve_reference


def test_phi3_alias_names_the_hub_repo():
    ref = resolve_reference("phi-3-mini")
    assert ref.kind == "hub"
    assert ref.repo_id == "mlx-community/Phi-3-mini-128k-instruct-4bit"
    assert ALIASES["phi-3-mini"] == ref.repo_id


def test_bundled_alias_points_at_the_shipped_gguf():
    ref = resolve_reference("smollm2-135m")
    assert ref.kind == "bundled"
    assert ref.path == str(bundled_gguf_path())
    assert bundled_gguf_path().stat().st_size > 50_000_000


def test_repo_id_is_a_hub_reference():
    ref = resolve_reference("someone/some-model")
    assert (ref.kind, ref.repo_id, ref.name) == ("hub", "someone/some-model", "someone/some-model")


def test_local_mlx_directory_and_gguf_file(tiny_model_dir):
    assert resolve_reference(str(tiny_model_dir)).kind == "mlx_dir"
    assert resolve_reference(str(bundled_gguf_path())).kind == "gguf_file"


@pytest.mark.parametrize("ref", ["/tmp", "../../etc", "./nothing-here", "~/nope.gguf", "no spaces allowed"])
def test_unusable_references_are_not_found(ref):
    with pytest.raises(ModelNotFoundError):
        resolve_reference(ref)


@pytest.mark.parametrize("ref", ["./no/such/dir", "/tmp/pensieve-no-such-model.gguf", "missing.gguf"])
def test_a_path_that_does_not_exist_says_so(ref):
    with pytest.raises(ModelNotFoundError) as caught:
        resolve_reference(ref)
    assert caught.value.message == f"no such file or directory: {ref}"


def test_a_path_that_exists_but_holds_no_model_says_what_it_lacks(tmp_path):
    with pytest.raises(ModelNotFoundError, match="neither a GGUF file nor an MLX model directory"):
        resolve_reference(str(tmp_path))
