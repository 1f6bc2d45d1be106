"""An nn.Sequential classifier with Flatten and Dropout, and one with BatchNorm1d."""

import torch
from torch import nn


def build(n_classes=4):
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(12, 32),
        nn.ReLU(),
        nn.Dropout(0.2),
        nn.Linear(32, 16),
        nn.ReLU(),
        nn.Dropout(0.2),
        nn.Linear(16, n_classes),
    )


model = build()
loss_fn = nn.CrossEntropyLoss()

with_batchnorm = nn.Sequential(
    nn.Flatten(),
    nn.Linear(12, 32),
    nn.BatchNorm1d(32),
    nn.ReLU(),
    nn.Linear(32, 4),
)

if __name__ == "__main__":
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(3):
        xb, yb = torch.randn(8, 3, 4), torch.randint(0, 4, (8,))
        opt.zero_grad()
        loss_fn(model(xb), yb).backward()
        opt.step()
