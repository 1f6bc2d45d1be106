"""An MLP whose layers use hand-written backwards (torch.autograd.Function): one correct
set, and three wrong ones a learner might write."""

import torch
import torch.nn as nn
import torch.nn.functional as F


class LinearFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, input, weight, bias):
        ctx.save_for_backward(input, weight)
        return input.mm(weight.t()) + bias

    @staticmethod
    def backward(ctx, grad_output):
        input, weight = ctx.saved_tensors
        grad_input = grad_output.mm(weight)
        grad_weight = grad_output.t().mm(input)
        grad_bias = grad_output.sum(0)
        return grad_input, grad_weight, grad_bias


class LinearNoBiasSum(torch.autograd.Function):
    """Wrong: the bias gradient is averaged over the batch instead of summed."""

    @staticmethod
    def forward(ctx, input, weight, bias):
        ctx.save_for_backward(input, weight)
        return input.mm(weight.t()) + bias

    @staticmethod
    def backward(ctx, grad_output):
        input, weight = ctx.saved_tensors
        return grad_output.mm(weight), grad_output.t().mm(input), grad_output.mean(0)


class SigmoidFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, z):
        s = torch.sigmoid(z)
        ctx.save_for_backward(s)
        return s

    @staticmethod
    def backward(ctx, grad_output):
        (s,) = ctx.saved_tensors
        return grad_output * s * (1 - s)


class SigmoidAtOutput(torch.autograd.Function):
    """Wrong: sigmoid' evaluated at the output s instead of the input z."""

    @staticmethod
    def forward(ctx, z):
        s = torch.sigmoid(z)
        ctx.save_for_backward(s)
        return s

    @staticmethod
    def backward(ctx, grad_output):
        (s,) = ctx.saved_tensors
        t = torch.sigmoid(s)
        return grad_output * t * (1 - t)


class ReLUFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, z):
        ctx.save_for_backward(z)
        return z.clamp(min=0)

    @staticmethod
    def backward(ctx, grad_output):
        (z,) = ctx.saved_tensors
        grad = grad_output.clone()
        grad[z < 0] = 0
        return grad


class ReLUForgetsMask(torch.autograd.Function):
    """Wrong: passes the gradient through unchanged (forgets relu's mask)."""

    @staticmethod
    def forward(ctx, z):
        return z.clamp(min=0)

    @staticmethod
    def backward(ctx, grad_output):
        return grad_output


class MyLinear(nn.Module):
    def __init__(self, n_in, n_out, fn=LinearFunction):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(n_out, n_in) / n_in ** 0.5)
        self.bias = nn.Parameter(torch.randn(n_out) * 0.1)
        self.fn = fn

    def forward(self, x):
        return self.fn.apply(x, self.weight, self.bias)


class CustomNet(nn.Module):
    def __init__(self, linear=LinearFunction, act=SigmoidFunction):
        super().__init__()
        torch.manual_seed(0)
        self.l1 = MyLinear(5, 8, linear)
        self.l2 = MyLinear(8, 8, linear)
        self.l3 = MyLinear(8, 3)
        self.act = act

    def forward(self, x):
        x = self.act.apply(self.l1(x))
        x = self.act.apply(self.l2(x))
        return self.l3(x)


def correct():
    return CustomNet().double()


def wrong_bias_mean():
    return CustomNet(linear=LinearNoBiasSum).double()


def wrong_sigmoid_at_output():
    return CustomNet(act=SigmoidAtOutput).double()


class ReluNet(nn.Module):
    def __init__(self, act=ReLUFunction):
        super().__init__()
        torch.manual_seed(1)
        self.fc1 = nn.Linear(5, 8)
        self.fc2 = nn.Linear(8, 3)
        self.act = act

    def forward(self, x):
        return self.fc2(self.act.apply(self.fc1(x)))


def relu_correct():
    return ReluNet().double()


def wrong_relu_mask():
    return ReluNet(ReLUForgetsMask).double()


criterion = nn.CrossEntropyLoss()


def loss_fn(output, target):
    return F.cross_entropy(output, target)
