"""A stand-in transform module for the bad-spec corpus (checked with ast, never imported)."""


def preprocessing_fn(inputs):
    return inputs
