import re

from pensieve_core import Failed, errors


def test_each_error_knows_type_and_status():
    assert (errors.PromptTooLongError(10, 5).status, errors.PromptTooLongError(10, 5).error_type) == (
        400,
        "invalid_request_error",
    )
    assert str(errors.PromptTooLongError(12, 8)) == "prompt is too long: 12 tokens > 8 maximum"
    assert (errors.AuthenticationError("x").status, errors.AuthenticationError.error_type) == (
        401,
        "authentication_error",
    )
    assert errors.ModelNotFoundError("m").status == 404
    assert errors.OverloadedError("busy").error_type == "overloaded_error"
    assert errors.OverloadedError.status == 529


def _classes():
    return [v for v in vars(errors).values() if isinstance(v, type) and issubclass(v, Exception)]


def test_tree_docstring_draws_every_error_with_its_status_and_type():
    for cls in _classes():
        (line,) = [line for line in errors.__doc__.splitlines() if re.search(rf"\b{cls.__name__}\b", line)]
        assert f"{cls.status} {cls.error_type}" in line, line
        # Drawn one level (4 columns) below its parent.
        depth = len(cls.__mro__) - len(errors.PensieveError.__mro__)
        assert line.index(cls.__name__) == 4 * depth, line


def test_every_error_is_in_the_one_tree():
    assert all(issubclass(cls, errors.PensieveError) for cls in _classes())


def test_failed_names_the_tree_class_of_what_failed():
    assert Failed.of(errors.PromptTooLongError(9, 4)) == Failed(
        error_type="invalid_request_error", message="prompt is too long: 9 tokens > 4 maximum"
    )
    assert Failed.of(errors.OverloadedError("busy")).error_type == "overloaded_error"
    assert Failed.of(RuntimeError("device lost")) == Failed(
        error_type="api_error", message="generation failed: device lost"
    )
