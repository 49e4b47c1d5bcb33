"""algd: Augmented Lagrangian-Guided Diffusion for safe reinforcement learning."""

__version__ = "0.1.0"
