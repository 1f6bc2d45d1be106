"""A learner's network with sigmoid hidden layers, and a classic backprop bug.

The forward pass is right. In the backward pass the sigmoid helper is called with the
cached activation A instead of the pre-activation Z, so the derivative is sigmoid'(A)
where sigmoid'(Z) belongs.

    gradparity debug examples/buggy_backprop.py
"""

# ruff: noqa: E501, E741  (the seed's code as published: `l` for the layer index)

import numpy as np


def sigmoid(Z, deriv=False):
    s = 1 / (1 + np.exp(-Z))
    if deriv:
        return s * (1 - s)
    return s


def forward(X, parameters):
    L = len(parameters) // 2
    cache = {"A0": X}
    for l in range(1, L + 1):
        cache["Z" + str(l)] = np.dot(parameters["W" + str(l)], cache["A" + str(l - 1)]) + parameters["b" + str(l)]
        cache["A" + str(l)] = sigmoid(cache["Z" + str(l)])
    return cache["A" + str(L)], cache


def backpropagation(cache, Y, parameters):
    L = len(parameters) // 2
    m = Y.shape[1]
    grads = {}
    grads["dZ" + str(L)] = cache["A" + str(L)] - Y
    grads["dW" + str(L)] = (1 / m) * np.dot(grads["dZ" + str(L)], cache["A" + str(L - 1)].T)
    grads["db" + str(L)] = (1 / m) * np.sum(grads["dZ" + str(L)], axis=1, keepdims=True)
    for l in range(L - 1, 0, -1):
        grads["dA" + str(l)] = np.dot(parameters["W" + str(l + 1)].T, grads["dZ" + str(l + 1)])
        grads["dZ" + str(l)] = grads["dA" + str(l)] * sigmoid(cache["A" + str(l)], deriv=True)
        grads["dW" + str(l)] = (1 / m) * np.dot(grads["dZ" + str(l)], cache["A" + str(l - 1)].T)
        grads["db" + str(l)] = (1 / m) * np.sum(grads["dZ" + str(l)], axis=1, keepdims=True)
    return grads
