"""The built-in tabular transform and trainer, used when a spec's Transform and Trainer have no ``module_file``.

``tabular_config`` resolves the spec's ``features`` and ``label`` against the schema and carries the result from
Transform to Trainer (``mlpipe_tabular.json`` beside the transform graph); ``tabular_transform`` is the
``preprocessing_fn``, ``tabular_trainer`` the ``run_fn``.
"""
