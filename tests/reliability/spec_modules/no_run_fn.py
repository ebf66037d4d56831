"""A module without run_fn, for the missing-function case."""


def train(fn_args):
    return None
