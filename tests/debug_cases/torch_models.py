"""PyTorch models for the debug tests: supported, unsupported, and custom modules with
deliberate autograd bugs (their own torch.autograd.Function)."""

import torch
from torch import nn


def _seeded(model: nn.Module, seed: int = 0) -> nn.Module:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=p.dtype) * 0.5)
    return model


class _SigmoidDerivativeAtOutput(torch.autograd.Function):
    """sigmoid with a hand-written backward that evaluates sigmoid' at the output A."""

    @staticmethod
    def forward(ctx, z):
        a = torch.sigmoid(z)
        ctx.save_for_backward(a)
        return a

    @staticmethod
    def backward(ctx, grad):
        (a,) = ctx.saved_tensors
        s = torch.sigmoid(a)  # the bug: sigmoid'(A) where sigmoid'(Z) = A (1 - A) belongs
        return grad * s * (1 - s)


class MySigmoid(nn.Sigmoid):
    def forward(self, z):
        return _SigmoidDerivativeAtOutput.apply(z)


class _LinearDoubleWeightGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, w, b):
        ctx.save_for_backward(x, w)
        return x @ w.T + b

    @staticmethod
    def backward(ctx, grad):
        x, w = ctx.saved_tensors
        return grad @ w, 2 * grad.T @ x, grad.sum(0)  # the bug: dW doubled


class MyLinear(nn.Linear):
    def forward(self, x):
        return _LinearDoubleWeightGrad.apply(x, self.weight, self.bias)


class _TanhRaises(torch.autograd.Function):
    @staticmethod
    def forward(ctx, z):
        ctx.save_for_backward(z)
        return torch.tanh(z)

    @staticmethod
    def backward(ctx, grad):
        (z,) = ctx.saved_tensors
        return grad * (1 - torch.tanh(z) ** 2) @ torch.ones(3, 3)  # the bug: raises


class BadTanh(nn.Tanh):
    def forward(self, z):
        return _TanhRaises.apply(z)


def good():
    return _seeded(nn.Sequential(nn.Linear(3, 6), nn.Tanh(), nn.Linear(6, 6), nn.Tanh(),
                                 nn.Linear(6, 1)).double())


def sigmoid_at_output():
    return _seeded(nn.Sequential(nn.Linear(3, 5), MySigmoid(), nn.Linear(5, 4), MySigmoid(),
                                 nn.Linear(4, 2)).double())


def doubled_weight_grad():
    return _seeded(nn.Sequential(nn.Linear(3, 5), nn.ReLU(), MyLinear(5, 4), nn.ReLU(),
                                 nn.Linear(4, 2)).double())


def backward_raises():
    return _seeded(nn.Sequential(nn.Linear(3, 5), BadTanh(), nn.Linear(5, 2)).double())


nested = nn.Sequential(nn.Sequential(nn.Linear(3, 4), nn.LeakyReLU(0.01)),
                       nn.Sequential(nn.Linear(4, 2)))



class Residual(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(4, 4)
        self.fc2 = nn.Linear(4, 1)

    def forward(self, x):
        h = torch.relu(self.fc1(x)) + x
        return self.fc2(h)


class Branchy(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(3, 4)
        self.fc2 = nn.Linear(4, 1)

    def forward(self, x):
        h = self.fc1(x)
        if h.sum() > 0:
            h = torch.relu(h)
        return self.fc2(h)


class Conv(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(1, 2, 3)
        self.fc = nn.Linear(8, 1)

    def forward(self, x):
        return self.fc(torch.flatten(self.conv(x.unsqueeze(1)), 1))


unsupported = {
    "leaky_slope": (nn.Sequential(nn.Linear(3, 4), nn.LeakyReLU(0.2), nn.Linear(4, 1)),
                    "module [1] LeakyReLU(negative_slope=0.2) is not supported (it calls "
                    "leaky_relu with negative_slope=0.2"),
    "no_bias": (nn.Sequential(nn.Linear(3, 4, bias=False), nn.ReLU(), nn.Linear(4, 1)),
                "a Linear without bias is not supported"),
    "relu_at_output": (nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 1),
                                     nn.ReLU()),
                       "nn.ReLU at [3] after the last Linear: no head applies it"),
    "mixed": (nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 4), nn.Tanh(),
                            nn.Linear(4, 1)),
              "mixed hidden activations (relu at [1], tanh at [3])"),
    "two_activations": (nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.ReLU(), nn.Linear(4, 1)),
                        "follows another activation"),
    "batchnorm": (nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.ReLU(),
                                nn.Linear(4, 1)),
                  "module [1] BatchNorm1d(4, "),
    "residual": (Residual(), "joins two tensors of the path (a skip connection or a sum)"),
    "branch": (Branchy(), "forward branches on a tensor's value at "),
    "conv": (Conv(), "module [conv] Conv1d(1, 2, kernel_size=(3,), stride=(1,)) is not "
             "supported"),
    "softmax_then_ce": (nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 3),
                                      nn.Softmax(dim=1)),
                        "CrossEntropyLoss applies softmax again"),
    "half": (nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 1)).half(),
             "parameters in float16"),
}

relu_at_output = unsupported["relu_at_output"][0]
