"""The whole study as one pipeline: the training grid (``grid``, with live ``progress`` lines) and
``run_study`` (``study``: cached stages keyed by what they depend on, ``stages``; one ``study_report``)."""
