from pensieve_core import errors


def test_each_error_knows_type_and_status():
    assert (errors.PromptTooLongError(10, 5).status, errors.PromptTooLongError(10, 5).error_type) == (
        400, "invalid_request_error"
    )
    assert str(errors.PromptTooLongError(12, 8)) == "prompt is too long: 12 tokens > 8 maximum"
    assert (errors.AuthenticationError("x").status, errors.AuthenticationError.error_type) == (
        401, "authentication_error"
    )
    assert errors.ModelNotFoundError("m").status == 404
    assert errors.OverloadedError("busy").error_type == "overloaded_error"
    assert errors.OverloadedError.status == 529


def test_tree_docstring_lists_every_error():
    names = [n for n, v in vars(errors).items() if isinstance(v, type) and issubclass(v, Exception)]
    for name in names:
        if name != "ConfigError":
            assert name in errors.__doc__, name
