"""A PyTorch MLP with a hand-written ReLU backward, as a learner writes one.

    gradparity debug --torch examples/torch_mlp.py:Net

The backward forgets that relu'(z) is 0 for z < 0; gradparity names the layer and the
mistake.
"""

import torch
import torch.nn as nn
import torch.nn.functional as F


class MyReLU(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x.clamp(min=0)

    @staticmethod
    def backward(ctx, grad_output):
        (x,) = ctx.saved_tensors
        return grad_output * (x >= 0).to(grad_output.dtype) + grad_output * (x < 0)


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.fc1 = nn.Linear(20, 32)
        self.fc2 = nn.Linear(32, 16)
        self.fc3 = nn.Linear(16, 4)
        self.dropout = nn.Dropout(0.1)

    def forward(self, x):
        x = torch.flatten(x, 1)
        x = self.dropout(F.relu(self.fc1(x)))
        x = MyReLU.apply(self.fc2(x))
        return F.log_softmax(self.fc3(x), dim=1)


if __name__ == "__main__":
    model = Net()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(5):
        x, y = torch.randn(16, 20), torch.randint(0, 4, (16,))
        optimizer.zero_grad()
        loss = F.nll_loss(model(x), y)
        loss.backward()
        optimizer.step()
