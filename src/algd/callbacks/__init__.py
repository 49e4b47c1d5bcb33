"""Callbacks keyed on environment frames: logging and progress (``frames``), evaluation (``evaluation``), videos
(``video``) and checkpoints (``checkpoint``: find, load, save, resume)."""
