"""Data: the DataModule (``module``), its episode statistics (``episodes``), the TorchRL collectors
(``collectors``) and the replay buffer with its checkpoint form (``replay``)."""
