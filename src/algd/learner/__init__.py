"""The learner and the maths a reader checks against the paper: the LightningModule and its update order
(``module``), the constraint Q̂c, h, g (``constraint``), the energies (``energy``), the Lagrange-multiplier rules
(``multipliers``), the networks (``nets``) and the CUDA-graph capture of the update (``graphs``)."""
