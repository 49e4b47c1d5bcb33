"""``make bench`` (``python -m algd.bench``): the learner, its yardstick SAC, collection and the training loop,
timed as training builds them (:mod:`algd.build`)."""
