"""Device names shared by the training loop, the classifier's RNG forking and provenance."""

from __future__ import annotations

import torch


def cuda_index(device) -> int | None:
    """The index of the CUDA device ``device`` names (``"cuda"``: the current one), else None."""
    device = torch.device(device)
    if device.type == "cuda" and torch.cuda.is_available():
        return device.index if device.index is not None else torch.cuda.current_device()
    return None
