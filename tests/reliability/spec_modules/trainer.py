"""A stand-in trainer module for the bad-spec corpus (checked with ast, never imported)."""

import tensorflow as tf


def run_fn(fn_args):
    return tf
