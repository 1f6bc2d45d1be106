"""A small regressor with activations as modules, trained with MSELoss (mean)."""

import torch
from torch import nn


class Regressor(nn.Module):
    def __init__(self, n_in=6, hidden=20, n_out=3):
        super().__init__()
        self.hidden1 = nn.Linear(n_in, hidden)
        self.act1 = nn.Tanh()
        self.hidden2 = nn.Linear(hidden, hidden)
        self.act2 = nn.Tanh()
        self.out = nn.Linear(hidden, n_out)

    def forward(self, x):
        h = self.act1(self.hidden1(x))
        h = self.act2(self.hidden2(h))
        return self.out(h)


model = Regressor().double()
criterion = nn.MSELoss()
optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

for step in range(2):  # noqa: B007 - top-level training, as scripts do
    xb = torch.randn(32, 6, dtype=torch.float64)
    yb = xb[:, :3] * 0.5
    optimizer.zero_grad()
    loss = criterion(model(xb), yb)
    loss.backward()
    optimizer.step()
