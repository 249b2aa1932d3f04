"""Names of the files a run writes, shared by the layers that write and read them.

The bottom layer: no imports, so reporting and the runner read run folders without loading
torch.
"""

__all__ = ["TRAINING_FILENAME"]

TRAINING_FILENAME = "training.json"
"""The training record each fit writes into its run folder."""
