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

unsupported = {
    "dropout": (nn.Sequential(nn.Linear(3, 4), nn.Dropout(0.5), nn.Linear(4, 1)),
                "module [1] Dropout(p=0.5, inplace=False) is not supported; supported:"),
    "leaky_slope": (nn.Sequential(nn.Linear(3, 4), nn.LeakyReLU(0.2), nn.Linear(4, 1)),
                    "negative_slope=0.2 is not supported"),
    "no_bias": (nn.Sequential(nn.Linear(3, 4, bias=False), nn.ReLU(), nn.Linear(4, 1)),
                "a Linear without bias is not supported"),
    "trailing_sigmoid": (nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 1),
                                       nn.Sigmoid()),
                         "is last: an output activation belongs to the head, not the module; "
                         "remove it and pass --head sigmoid_bce"),
    "trailing_softmax": (nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 3),
                                       nn.Softmax(dim=1)),
                         "remove it and pass --head softmax_ce"),
    "mixed": (nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 4), nn.Tanh(),
                            nn.Linear(4, 1)),
              "mixed hidden activations (ReLU at [1], Tanh at [3])"),
    "two_activations": (nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.ReLU(), nn.Linear(4, 1)),
                        "follows another activation"),
    "not_sequential": (nn.Linear(3, 1), "expected an nn.Sequential"),
    "half": (nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 1)).half(),
             "parameters in float16"),
}

trailing_sigmoid = unsupported["trailing_sigmoid"][0]
