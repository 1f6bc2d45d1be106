"""A small PyTorch MLP to check with gradparity debug.

    gradparity debug --torch examples/torch_model.py:model

Three classes, so the default head is cross-entropy on the logits (softmax_ce); the last
module is the output Linear (softmax belongs to the loss, not to the model).
"""

import torch
from torch import nn


def make_model() -> nn.Sequential:
    gen = torch.Generator().manual_seed(0)
    model = nn.Sequential(
        nn.Linear(4, 16), nn.GELU(approximate="tanh"),
        nn.Linear(16, 8), nn.GELU(approximate="tanh"),
        nn.Linear(8, 3),
    )
    with torch.no_grad():  # deterministic weights without touching torch's global seed
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.5)
    return model


model = make_model()
