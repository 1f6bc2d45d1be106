"""Course-style code that keeps dZ and dA in local variables and returns only dW and db;
tanh hidden layers with tanh'(A) = 1 - tanh(A)^2 where 1 - tanh(Z)^2 = 1 - A^2 belongs."""

# ruff: noqa: E501, E741  (learner-style code)

import numpy as np


def tanh_backward(dA, A):
    return dA * (1 - np.tanh(A) ** 2)


def backpropagation(cache, Y, parameters):
    L = len(parameters) // 2
    m = Y.shape[1]
    grads = {}
    dZ = cache["A" + str(L)] - Y
    for l in range(L, 0, -1):
        grads["dW" + str(l)] = np.dot(dZ, cache["A" + str(l - 1)].T) / m
        grads["db" + str(l)] = np.sum(dZ, axis=1, keepdims=True) / m
        if l > 1:
            dA = np.dot(parameters["W" + str(l)].T, dZ)
            dZ = tanh_backward(dA, cache["A" + str(l - 1)])
    return grads
